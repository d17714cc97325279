"""The console in headless Chromium against a real control plane (`inferstack serve`, sim replicas):
sign in, create, watch it scale under load, stop, edit, batches, and a second tenant who sees none of it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from console_driver import Console

from support import ControlPlane, sim_deployment, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    # Samples every 0.5 s (10 s by default), so the charts move within a test's patience.
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_HISTORY_INTERVAL_S": "0.5"}).start()
    try:
        yield plane
    finally:
        plane.stop()


class Load:
    """Chat requests at `rps` through the official client, in a thread, until stopped."""

    def __init__(self, plane: ControlPlane, key: str, model: str, rps: float) -> None:
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(plane, key, model, rps),))

    async def _run(self, plane: ControlPlane, key: str, model: str, rps: float) -> None:
        client = openai.AsyncOpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0, timeout=120)

        async def one(i: int) -> None:
            try:
                await client.chat.completions.create(model=model, max_tokens=8,
                                                     messages=[{"role": "user", "content": f"q{i}"}])
            except openai.APIError as exc:
                self.failures.append(f"request {i}: {exc}")

        tasks = []
        while not self._stop.is_set():
            tasks.append(asyncio.create_task(one(len(tasks))))
            await asyncio.sleep(1 / rps)
        await asyncio.gather(*tasks)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(120)


def legend_max(console: Console, chart: str, series: str) -> float:
    found = console.all(f'#{chart} .legend [data-series="{series}"]')
    value = found[0].get_attribute("data-max") if found else ""
    return float(value) if value else 0.0


def test_sign_in_create_watch_it_scale_stop_it_and_another_tenant_sees_none_of_it(plane: ControlPlane,
                                                                                  browser: object) -> None:
    alpha, beta = plane.create_key("alpha"), plane.create_key("beta")
    console = Console(browser, plane.url)  # type: ignore[arg-type]
    console.sign_in(alpha)
    assert console.session_key() == alpha
    assert alpha not in console.driver.current_url
    assert "No deployments yet." in console.text("#deployments")

    console.fill("#create-form", {"name": "chat", "hf_model_id": "inferstack/sim-chat", "engine": "sim",
                                  "hardware_profile": "cpu", "min_replicas": 1, "max_replicas": 3, "target_rps": 2,
                                  "engine_args": "--ttft-ms 50 --tokens-per-s 40 --max-concurrency 1"})
    console.submit("#create-form")
    console.wait(lambda: "#/deployments/" in console.driver.current_url, what="the new deployment's page")
    deployment_id = console.driver.current_url.rsplit("/", 1)[-1]
    console.wait(lambda: console.text("#dep-status") == "running", what="status running")
    console.wait(lambda: legend_max(console, "chart-replicas", "ready") == 1, what="one ready replica charted")
    assert legend_max(console, "chart-replicas", "max") == 3
    console.find('#windows button[data-window="15m"]').click()
    console.wait(lambda: console.driver.current_url.endswith("?window=15m"), what="the window kept in the link")

    # 8 requests/s against a target of 2 per replica, on one-slot replicas whose slots cannot carry it
    # (the autoscaler fills spare slots before buying): the replica chart rises and the scale-up is drawn on it.
    with Load(plane, alpha, "chat", rps=8) as load:
        console.wait(lambda: legend_max(console, "chart-replicas", "ready") >= 2, timeout=90,
                     what="the replica chart rising")
        console.wait(lambda: console.all('#events li[data-kind="scaled"]'), what="the scale event listed")
        markers = console.wait(lambda: console.all("#chart-replicas .event-marker title"), what="an event marker")
        assert any("-> " in m.get_attribute("textContent") and "replicas" in m.get_attribute("textContent")
                   for m in markers)
        scaled = console.text('#events li[data-kind="scaled"]')
        assert "replicas" in scaled and "before=" in scaled and "after=" in scaled
        console.wait(lambda: legend_max(console, "chart-traffic", "arrivals") > 2, what="arrivals charted")
        console.find("#playground button[type=submit]").click()
        console.wait(lambda: console.text("#answer").strip(), what="the playground's streamed answer")
        console.screenshot("console-deployment.png")
    assert load.failures == []

    console.open("#/")
    row = f'#deployments tr[data-id="{deployment_id}"]'
    console.wait(lambda: console.all(row), what="the deployment in the list")
    assert "chat" in console.text(row) and "inferstack/sim-chat" in console.text(row)
    console.screenshot("console-deployments.png")
    console.find(f'{row} button[data-act="stop"]').click()
    console.wait(lambda: "stopped" in console.text(f"{row} .status"), what="the deployment stopped")
    assert plane.client(alpha).get(f"/v1/deployments/{deployment_id}").json()["status"] == "stopped"

    console.sign_out()
    assert console.session_key() is None
    console.sign_in(beta)
    assert "No deployments yet." in console.text("#deployments")
    console.open(f"#/deployments/{deployment_id}")
    console.wait(lambda: "not found" in console.text("#dep-error"), what="someone else's deployment not found")
    assert console.all("#chart-replicas") == []
    assert plane.client(beta).get(f"/v1/deployments/{deployment_id}/history").status_code == 404


def test_bad_input_gets_the_message_beside_its_field_and_creates_or_changes_nothing(plane: ControlPlane,
                                                                                    browser: object) -> None:
    key = plane.create_key("careful")
    rest = plane.client(key)
    console = Console(browser, plane.url)  # type: ignore[arg-type]
    console.sign_in(key)

    console.fill("#create-form", {"name": "too-few", "hf_model_id": "inferstack/sim-chat", "engine": "sim",
                                  "hardware_profile": "cpu", "min_replicas": 5, "max_replicas": 2})
    console.submit("#create-form")
    console.wait(lambda: console.field_error("#create-form", "min_replicas"), what="the min_replicas message")
    assert "must not exceed max_replicas (2)" in console.field_error("#create-form", "min_replicas")
    assert "invalid" in console.find("#create-form [name=min_replicas]").get_attribute("class")

    console.fill("#create-form", {"name": "Not A Name!", "min_replicas": 1, "hardware_profile": "gpu.none"})
    console.submit("#create-form")
    console.wait(lambda: console.field_error("#create-form", "name"), what="the name message")
    assert console.field_error("#create-form", "min_replicas") == ""  # the earlier message went
    assert "hardware_profile" not in console.text("#create-form .form-error")
    assert rest.get("/v1/deployments").json()["data"] == []  # nothing half-created
    assert "#/deployments/" not in console.driver.current_url

    deployment_id = sim_deployment(plane, key, "steady", min_replicas=1, max_replicas=2)
    console.open(f"#/deployments/{deployment_id}")
    console.wait(lambda: console.find("#scaling-form [name=max_replicas]").get_attribute("value") == "2",
                 what="the scaling form filled in")
    console.fill("#scaling-form", {"min_replicas": 3})
    console.submit("#scaling-form")
    console.wait(lambda: console.field_error("#scaling-form", "min_replicas"), what="the scaling message")
    assert "must not exceed max_replicas (2)" in console.field_error("#scaling-form", "min_replicas")
    spec = rest.get(f"/v1/deployments/{deployment_id}").json()["spec"]
    assert (spec["min_replicas"], spec["max_replicas"]) == (1, 2)  # nothing changed

    console.fill("#scaling-form", {"min_replicas": 1, "max_replicas": 4})
    console.submit("#scaling-form")
    console.wait(lambda: console.text("#scaling-form .form-note") == "Saved.", what="the edit saved")
    assert rest.get(f"/v1/deployments/{deployment_id}").json()["spec"]["max_replicas"] == 4
    assert console.field_error("#scaling-form", "min_replicas") == ""


def test_stop_resume_and_delete_from_the_list(plane: ControlPlane, browser: object) -> None:
    key = plane.create_key("tidy")
    rest = plane.client(key)
    deployment_id = sim_deployment(plane, key, "short-lived")
    console = Console(browser, plane.url)  # type: ignore[arg-type]
    console.sign_in(key)
    row = f'#deployments tr[data-id="{deployment_id}"]'
    console.wait(lambda: "running" in console.text(f"{row} .status"), what="running in the list")
    console.find(f'{row} button[data-act="stop"]').click()
    console.wait(lambda: "stopped" in console.text(f"{row} .status"), what="stopped")
    console.find(f'{row} button[data-act="resume"]').click()
    console.wait(lambda: "running" in console.text(f"{row} .status"), what="running again")
    console.find(f'{row} button[data-act="delete"]').click()
    confirm = console.driver.switch_to.alert
    assert "short-lived" in confirm.text
    confirm.accept()
    console.wait(lambda: not console.all(row), what="the row gone")
    assert rest.get(f"/v1/deployments/{deployment_id}").status_code == 404


def test_batches_page_shows_progress_counts_and_errors_and_downloads_the_results(plane: ControlPlane,
                                                                         browser: object) -> None:
    key = plane.create_key("batcher")
    sim_deployment(plane, key, "bulk")
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
    lines = [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "bulk", "max_tokens": 4, "messages": [{"role": "user", "content": f"q{i}"}]}}
             for i in range(3)]
    upload = client.files.create(file=("input.jsonl", "\n".join(json.dumps(x) for x in lines).encode()),
                                 purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    broken = client.files.create(file=("broken.jsonl", (json.dumps(lines[0]) + "\n" + json.dumps(
        {**lines[1], "custom_id": None}) + "\n").encode()), purpose="batch")
    refused = client.batches.create(input_file_id=broken.id, endpoint="/v1/chat/completions", completion_window="24h")

    console = Console(browser, plane.url)  # type: ignore[arg-type]
    console.sign_in(key)
    console.open("#/batches")
    row = f'#batches tr[data-id="{batch.id}"]'
    console.wait(lambda: "completed" in console.text(row), what="the batch completed")
    assert "3 / 3" in console.text(row)
    assert console.find(f"{row} progress").get_attribute("value") == "3"
    assert "input.jsonl" in console.text("#files")
    failed = f'#batches tr[data-id="{refused.id}"]'
    console.wait(lambda: "failed" in console.text(failed), what="the broken batch failed")
    assert "line 2: Line 2 has no custom_id." in console.text(failed)
    console.screenshot("console-batches.png")

    console.find(f'{row} button[data-download]').click()
    downloads: Path = console.driver.downloads  # type: ignore[attr-defined]
    result = wait_for(lambda: next(downloads.glob(f"{batch.id}-results.jsonl"), None), what="the results file")
    answers = [json.loads(line) for line in wait_for(lambda: result.read_text().splitlines(), what="its lines")]
    assert sorted(a["custom_id"] for a in answers) == ["line-0", "line-1", "line-2"]
    assert httpx.get(plane.url + "/console/", timeout=5).headers["content-security-policy"].startswith("default-src")

