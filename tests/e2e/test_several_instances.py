"""Two `inferstack serve` processes on one PostgreSQL database (a schema of its own per test): one
leads, both serve every deployment, and the follower takes over when the leader dies."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import create_engine, text

from lora_adapter import write_config
from support import INFERSTACK, SIM_SPEC, ControlPlane, leader_and_follower, postgres_schema, wait_for, wait_running

pytestmark = pytest.mark.postgres


@pytest.fixture
def planes(tmp_path: Path) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    with leader_and_follower(tmp_path, {"INFERSTACK_HEARTBEAT_S": "0.5"}) as both:
        yield both


def replicas_ever(rest: httpx.Client, dep_id: str) -> list[dict[str, object]]:
    return rest.get(f"/v1/deployments/{dep_id}/replicas", params={"all": "true"}).json()["data"]


def test_a_deployment_made_on_one_instance_is_served_by_the_other_with_one_set_of_replicas(
        planes: tuple[ControlPlane, ControlPlane], tmp_path: Path) -> None:
    a, b = planes
    key = a.create_key("acme")
    rest_a, rest_b = a.client(key), b.client(key)
    created = rest_a.post("/v1/deployments", json={**SIM_SPEC, "name": "chat", "min_replicas": 2, "max_replicas": 2,
                                                   "engine_args": ["--ttft-ms", "1", "--tokens-per-s", "0"],
                                                   "adapters": [{"name": "sql",
                                                                 "source": str(write_config(tmp_path / "sql"))}]})
    assert created.status_code == 201, created.text
    dep_id = created.json()["id"]
    wait_running(rest_a, dep_id)

    answer = openai.OpenAI(base_url=b.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert answer.choices[0].message.content
    assert "chat" in {m["name"] for m in rest_b.get("/v1/models").json()["data"]}

    wait_for(lambda: rest_b.get(f"/v1/deployments/{dep_id}").json()["ready_replicas"] == 2, timeout=5,
             what="the follower sees both replicas ready")
    time.sleep(1.0)  # ten ticks of either controller: a second one would have started replicas by now
    assert len(replicas_ever(rest_a, dep_id)) == 2
    view_a, view_b = (rest.get(f"/v1/deployments/{dep_id}").json() for rest in (rest_a, rest_b))
    assert (view_a["status"], view_a["ready_replicas"]) == (view_b["status"], view_b["ready_replicas"])
    assert (view_a["status"], view_a["ready_replicas"]) == ("running", 2)
    assert {r["id"] for r in view_a["replicas"]} == {r["id"] for r in view_b["replicas"]}
    for rest in (rest_a, rest_b):
        listing = rest.get(f"/v1/deployments/{dep_id}/replicas").text + rest.get(f"/v1/deployments/{dep_id}").text
        assert "api_key" not in listing  # the replicas' keys are in the database, never in a response
    # ... sealed there: the follower served above by opening them with the shared INFERSTACK_TOKEN_KEY.
    database = create_engine(a.env_extra["INFERSTACK_DATABASE_URL"])
    with database.connect() as connection:
        stored = [row[0] for row in connection.execute(text("select api_key from replicas"))]
    database.dispose()
    assert len(stored) == 2 and all(key.startswith("gAAAAA") for key in stored), "sealed with Fernet"
    for plane in (a, b):
        assert not any(key in plane.log_text() for key in stored)

    # One more request through the leader: `status` on either instance shows both instances' traffic added up.
    openai.OpenAI(base_url=a.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3)

    def merged_alike() -> bool:
        metrics_a, metrics_b = (rest.get(f"/v1/deployments/{dep_id}").json()["metrics"] for rest in (rest_a, rest_b))
        return (metrics_a == metrics_b and metrics_a is not None and metrics_a["instances_reporting"] == 2
                and metrics_a["completed"] == 2)

    wait_for(merged_alike, timeout=10, what="both instances show the leader's merged window of both instances")
    metrics = rest_b.get(f"/v1/deployments/{dep_id}").json()["metrics"]
    assert metrics["arrivals_per_s"] > 0 and metrics["in_flight"] == 0 and metrics["failed"] == 0
    assert metrics["p95_latency_ms"] is not None and metrics["p95_latency_ms"] >= metrics["p50_latency_ms"]
    shown = " ".join(b.cli(key, "status", dep_id).stdout.split())  # as one line, whatever the terminal's width
    assert "traffic (2 instances reporting" in shown and "2 completed, 0 failed" in shown

    # An adapter's usage adds up too: requests through either instance, the same totals on both.
    for plane, count in ((a, 2), (b, 3)):
        for _ in range(count):
            openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
                model="chat:sql", messages=[{"role": "user", "content": "hi"}], max_tokens=3)

    def adapter_usage(rest: httpx.Client) -> tuple[int, int]:
        (sql,) = rest.get(f"/v1/deployments/{dep_id}").json()["adapters"]
        return sql["requests"], sql["completion_tokens"]

    wait_for(lambda: adapter_usage(rest_a) == adapter_usage(rest_b) == (5, 15), timeout=10,
             what="both instances show the adapter's 5 requests")


def test_a_paused_deployment_woken_through_the_follower_serves_the_first_request(
        planes: tuple[ControlPlane, ControlPlane]) -> None:
    a, b = planes
    key = a.create_key("acme")
    rest_a = a.client(key)
    dep = rest_a.post("/v1/deployments", json={**SIM_SPEC, "name": "sleepy", "min_replicas": 0,
                                               "engine_args": ["--startup-delay-s", "0.5"]}).json()
    wait_for(lambda: b.client(key).get(f"/v1/deployments/{dep['id']}").json()["status"] == "paused", timeout=10,
             what="paused, as the follower sees it")
    answer = openai.OpenAI(base_url=b.url + "/v1", api_key=key, max_retries=0, timeout=30).chat.completions.create(
        model="sleepy", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert answer.choices[0].message.content
    events = rest_a.get(f"/v1/deployments/{dep['id']}/events").json()["data"]
    assert [e["kind"] for e in events].count("resumed") == 1


@dataclass
class LoadResult:
    served: int = 0
    failed_before_first_byte: list[str] = field(default_factory=list)
    cut_mid_stream: int = 0


def run_load(url: str, key: str, stop: threading.Event, result: LoadResult, streaming: bool) -> None:
    """One client in a loop: sequential requests (streamed or not) until told to stop."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": streaming}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while not stop.is_set():
            got_bytes = False
            try:
                with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    text = ""
                    for chunk in response.iter_text():
                        text += chunk
                        got_bytes = got_bytes or "data: " in text  # heartbeats are not answer bytes
                if response.status_code == 200 and (not streaming or "[DONE]" in text):
                    result.served += 1
                elif got_bytes and streaming and response.status_code == 200:
                    result.cut_mid_stream += 1
                else:
                    result.failed_before_first_byte.append(f"{response.status_code} {text[:200]}")
            except httpx.HTTPError as exc:
                if got_bytes:
                    result.cut_mid_stream += 1
                else:
                    result.failed_before_first_byte.append(repr(exc))
            time.sleep(0.02)


def test_kill_9_of_the_leader_under_load_hands_over_and_loses_no_request(
        planes: tuple[ControlPlane, ControlPlane]) -> None:
    a, b = planes
    key = a.create_key("acme")
    rest_a, rest_b = a.client(key), b.client(key)
    dep = rest_a.post("/v1/deployments", json={**SIM_SPEC, "name": "chat", "min_replicas": 2, "max_replicas": 2,
                                               "max_queue_wait_s": 30,
                                               "engine_args": ["--ttft-ms", "5", "--tokens-per-s", "200"]}).json()
    wait_running(rest_a, dep["id"])
    wait_for(lambda: rest_b.get(f"/v1/deployments/{dep['id']}").json()["ready_replicas"] == 2, timeout=5,
             what="the follower routes to both replicas")
    old_replicas = {r["id"] for r in rest_b.get(f"/v1/deployments/{dep['id']}").json()["replicas"]}

    def replaced() -> bool:
        ready = {r["id"] for r in rest_b.get(f"/v1/deployments/{dep['id']}").json()["replicas"]
                 if r["status"] == "ready"}
        return len(ready) == 2 and not ready & old_replicas

    stop, results = threading.Event(), [LoadResult() for _ in range(4)]
    clients = [threading.Thread(target=run_load, args=(b.url, key, stop, results[i], i % 2 == 0)) for i in range(4)]
    for client in clients:
        client.start()
    time.sleep(1.0)
    assert a.process is not None
    a.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    led = wait_for(lambda: "leading (epoch" in b.log_text() and time.monotonic(), timeout=10,
                   what="the follower takes the lead")
    wait_for(replaced, timeout=30, what="two new replicas, started by the new leader")
    back_at = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for client in clients:
        client.join(30)

    served = sum(r.served for r in results)
    cut = sum(r.cut_mid_stream for r in results)
    lost = [failure for r in results for failure in r.failed_before_first_byte]
    print(f"\nfailover: leader in {led - killed_at:.2f} s, replicas back in {back_at - killed_at:.2f} s; "
          f"served {served}, streams cut mid-way {cut}, lost before the first byte {len(lost)}")
    assert led - killed_at < 3.0
    assert served > 0 and lost == [], lost[:3]
    live = [r for r in replicas_ever(rest_b, dep["id"]) if r["status"] in ("starting", "ready", "draining")]
    assert len(live) == 2


def test_an_instance_without_the_shared_token_key_is_refused_at_start(tmp_path: Path) -> None:
    """Each home's own token.key: the second instance could not open the first one's secrets (nor it its)."""
    with postgres_schema() as url:
        first = ControlPlane(home=tmp_path / "a", env_extra={"INFERSTACK_DATABASE_URL": url}).start()
        try:
            second = ControlPlane(home=tmp_path / "b", env_extra={"INFERSTACK_DATABASE_URL": url})
            (tmp_path / "b").mkdir()
            refused = subprocess.run([INFERSTACK, "serve", "--port", str(second.port)], env=second.env,
                                     capture_output=True, text=True, timeout=60)
        finally:
            first.stop()
    assert refused.returncode != 0
    said = " ".join(refused.stderr.split())
    assert "cannot start the control plane" in said and "same INFERSTACK_TOKEN_KEY" in said, said[-2000:]


def test_serve_with_two_workers_has_one_leader_and_serves_on_every_connection(tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home", serve_args=["--workers", "2"]).start()
    try:
        key = plane.create_key("acme")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "chat", "min_replicas": 1,
                                                     "engine_args": ["--ttft-ms", "1", "--tokens-per-s", "0"]})
        assert created.status_code == 201, created.text
        wait_running(rest, created.json()["id"])
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        for _ in range(20):  # a new connection each: the kernel hands them to either worker
            with plane.client(key) as fresh:
                assert fresh.post("/v1/chat/completions", json=body).status_code == 200
                assert fresh.get("/v1/models").json()["data"][0]["name"] == "chat"
        time.sleep(0.5)
        assert len(replicas_ever(rest, created.json()["id"])) == 1
        assert plane.log_text().count("leading (epoch") == 1
    finally:
        plane.stop()
