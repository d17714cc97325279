"""The Batch API on a real control plane (`inferstack serve`) with sim replicas, over HTTP, with the
official openai client; and a control plane killed with SIGKILL mid-batch, then restarted."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from openai.types import Batch
from openai.types.chat import ChatCompletion

from support import ControlPlane, sim_deployment, wait_for

TERMINAL = {"completed", "failed", "cancelled", "expired"}


def served_by_replicas(plane: ControlPlane, key: str, deployment_id: str) -> float:
    """Requests the deployment's replicas report as answered (their vLLM-style Prometheus counter)."""
    rest = plane.client(key)
    total = 0.0
    for replica in rest.get(f"/v1/deployments/{deployment_id}").json()["replicas"]:
        for line in httpx.get(replica["url"] + "/metrics", timeout=5).text.splitlines():
            if line.startswith("vllm:request_success_total"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def write_requests(path: Path, model: str, count: int) -> Path:
    with path.open("wb") as out:
        for i in range(count):
            out.write(orjson.dumps({"custom_id": f"task-{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": model, "max_tokens": 4,
                                             "messages": [{"role": "user", "content": f"question {i}"}]}}) + b"\n")
    return path


def wait_finished(client: openai.OpenAI, batch_id: str, timeout: float = 120) -> Batch:
    def finished() -> Batch | None:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in TERMINAL else None

    return wait_for(finished, timeout=timeout, interval=0.1, what=f"batch {batch_id} to finish")


def results(client: openai.OpenAI, file_id: str | None) -> list[dict[str, object]]:
    if file_id is None:
        return []
    return [orjson.loads(line) for line in client.files.content(file_id).content.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path_factory.mktemp("batches") / "home",
                         env_extra={"INFERSTACK_CONTROLLER_TICK_S": "0.2"}).start()
    yield plane
    plane.stop()


def test_the_whole_flow_with_the_official_client(plane: ControlPlane, tmp_path: Path) -> None:
    key = plane.create_key("data-team")
    dep = sim_deployment(plane, key, "batcher")
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key)
    path = write_requests(tmp_path / "requests.jsonl", "batcher", 300)
    with path.open("rb") as file:
        uploaded = client.files.create(file=file, purpose="batch")
    assert uploaded.bytes == path.stat().st_size

    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"run": "nightly"})
    batch = wait_finished(client, created.id)
    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (300, 300, 0)
    output = results(client, batch.output_file_id)
    assert Counter(str(r["custom_id"]) for r in output) == Counter(f"task-{i}" for i in range(300))
    for result in output:
        response = result["response"]
        assert isinstance(response, dict) and response["status_code"] == 200
        completion = ChatCompletion.model_validate(response["body"])
        assert completion.model == "batcher" and completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert served_by_replicas(plane, key, dep) == 300

    # Another tenant sees none of it.
    other = openai.OpenAI(base_url=plane.url + "/v1", api_key=plane.create_key("someone-else"))
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(uploaded.id)
    assert other.batches.list().data == [] and other.files.list().data == []


def test_a_malformed_file_fails_per_line_and_sends_nothing(plane: ControlPlane, tmp_path: Path) -> None:
    key = plane.create_key("careless")
    dep = sim_deployment(plane, key, "strict")
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key)
    good = write_requests(tmp_path / "good.jsonl", "strict", 2).read_bytes().splitlines()
    bad = [good[0], b"{oops", good[0], good[1].replace(b"/v1/chat/completions", b"/v1/embeddings"),
           good[1].replace(b'"strict"', b'"nobody"')]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(bad) + b"\n")
    with path.open("rb") as file:
        uploaded = client.files.create(file=file, purpose="batch")
    batch = wait_finished(client, client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                        completion_window="24h").id)
    assert batch.status == "failed" and batch.errors is not None
    assert [(e.code, e.line) for e in batch.errors.data or []] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3), ("invalid_url", 4), ("model_not_found", 5)]
    assert served_by_replicas(plane, key, dep) == 0


def test_a_batch_wakes_a_paused_deployment(plane: ControlPlane, tmp_path: Path) -> None:
    key = plane.create_key("sleepy")
    rest = plane.client(key)
    dep = sim_deployment(plane, key, "napper", idle_timeout_s=1)
    wait_for(lambda: rest.get(f"/v1/deployments/{dep}").json()["status"] == "paused", timeout=30,
             interval=0.1, what="the idle deployment to pause")
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key)
    with write_requests(tmp_path / "wake.jsonl", "napper", 20).open("rb") as file:
        uploaded = client.files.create(file=file, purpose="batch")
    batch = wait_finished(client, client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                        completion_window="24h").id)
    assert batch.status == "completed" and batch.request_counts is not None
    assert batch.request_counts.completed == 20
    assert served_by_replicas(plane, key, dep) == 20


def test_kill_9_mid_batch_then_restart_each_custom_id_exactly_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ControlPlane(home=home, env_extra={"INFERSTACK_CONTROLLER_TICK_S": "0.2"}).start()
    try:
        key = first.create_key("night-shift")
        sim_deployment(first, key, "worker", ttft_ms=15)
        client = openai.OpenAI(base_url=first.url + "/v1", api_key=key)
        total = 2000
        with write_requests(tmp_path / "big.jsonl", "worker", total).open("rb") as file:
            uploaded = client.files.create(file=file, purpose="batch")
        batch_id = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                         completion_window="24h").id

        def progressed() -> int:
            counts = client.batches.retrieve(batch_id).request_counts
            return counts.completed if counts and counts.completed >= total // 4 else 0

        before = wait_for(progressed, timeout=120, interval=0.02, what="a quarter of the batch")
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    finally:
        first.stop()
    assert before < total, "the batch finished before the kill: make the replicas slower"

    second = ControlPlane(home=home, env_extra={"INFERSTACK_CONTROLLER_TICK_S": "0.2"}).start()
    try:
        client = openai.OpenAI(base_url=second.url + "/v1", api_key=key)
        resumed_at = time.monotonic()
        batch = wait_finished(client, batch_id, timeout=180)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None and batch.request_counts.total == total
        output = results(client, batch.output_file_id)
        errors = results(client, batch.error_file_id)
        seen = Counter(str(r["custom_id"]) for r in output + errors)
        assert seen == Counter(f"task-{i}" for i in range(total)), {k: v for k, v in seen.items() if v != 1}
        assert batch.request_counts.completed == len(output) and batch.request_counts.failed == len(errors)
        assert time.monotonic() - resumed_at < 90
    finally:
        second.stop()
