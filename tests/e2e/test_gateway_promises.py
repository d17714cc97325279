"""What docs/request-path.md promises about the gateway, each seen as a user meets it through
`inferstack serve`: a retry on another replica before the first byte, the per-replica batch slots,
the queue limit, embeddings, and the request counters on the control plane's /metrics."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import httpx
import openai
import psutil
from prometheus_client.parser import text_string_to_metric_families

from support import SIM_SPEC, ControlPlane, sim_deployment, wait_for, wait_running

BATCH_SLOTS_PER_REPLICA = 8  # docs/request-path.md: a replica takes at most 8 batch lines at once


def engine_processes(plane: ControlPlane) -> dict[str, psutil.Process]:
    """The sim engine process of each replica, by the port in its command line."""
    assert plane.process is not None
    engines = {}
    for process in psutil.Process(plane.process.pid).children(recursive=True):
        argv = process.cmdline()
        if "inferstack.engines.sim" in argv:
            engines[argv[argv.index("--port") + 1]] = process
    return engines


def test_a_replica_that_refuses_the_connection_is_retried_on_another(tmp_path: Path) -> None:
    # A slow controller tick leaves the killed replica in the ready set for a while, so the gateway
    # itself meets the refused connection (the controller would otherwise reap it first).
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_CONTROLLER_TICK_S": "3"}).start()
    try:
        key = plane.create_key("team")
        rest = plane.client(key)
        dep_id = sim_deployment(plane, key, "pair", min_replicas=2, max_replicas=2)
        replicas = wait_for(lambda: (r := rest.get(f"/v1/deployments/{dep_id}").json()["replicas"])
                            and sum(x["status"] == "ready" for x in r) == 2 and r, timeout=60, what="2 ready")
        engines = engine_processes(plane)
        victim, survivor = replicas[0], replicas[1]
        engines[victim["url"].rsplit(":", 1)[1]].kill()
        engines[victim["url"].rsplit(":", 1)[1]].wait(5)
        client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
        served_by = []
        for i in range(12):  # two random choices: about half of these pick the dead replica first
            raw = client.chat.completions.with_raw_response.create(
                model="pair", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=2)
            assert raw.parse().choices[0].message.content
            served_by.append(raw.headers["x-inferstack-replica"])
        assert set(served_by) == {survivor["id"]}
    finally:
        plane.stop()


def test_a_replica_takes_at_most_its_batch_slots(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("data-team")
    rest = control_plane.client(key)
    # Each line takes ~1 s on the replica, so the replica's own queue gauges show what arrived at once.
    dep_id = sim_deployment(control_plane, key, "batcher", ttft_ms=1000)
    replica_url = wait_running(rest, dep_id)["replicas"][0]["url"]
    lines = [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "batcher", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 1}}
             for i in range(2 * BATCH_SLOTS_PER_REPLICA + 4)]
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key)
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                                   purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    peak = 0
    while client.batches.retrieve(batch.id).status not in ("completed", "failed", "expired", "cancelled"):
        samples = {s.name: s.value for f in text_string_to_metric_families(httpx.get(replica_url + "/metrics").text)
                   for s in f.samples}
        peak = max(peak, int(samples["vllm:num_requests_running"] + samples["vllm:num_requests_waiting"]))
        time.sleep(0.05)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == len(lines)
    assert peak == BATCH_SLOTS_PER_REPLICA  # the runner sends 16 at once; the gateway lets 8 through


def test_requests_beyond_max_queued_requests_are_refused_at_once(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    spec = {**SIM_SPEC, "name": "narrow", "min_replicas": 0, "max_queued_requests": 2, "max_queue_wait_s": 4,
            "engine_args": ["--startup-delay-s", "30"]}
    dep = rest.post("/v1/deployments", json=spec).json()
    wait_for(lambda: rest.get(f"/v1/deployments/{dep['id']}").json()["status"] == "paused", timeout=10,
             what="paused")
    body = {"model": "narrow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    held: list[int] = []
    waiters = [threading.Thread(target=lambda: held.append(rest.post("/v1/chat/completions", json=body).status_code))
               for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    wait_for(lambda: rest.get(f"/v1/deployments/{dep['id']}").json()["queued_requests"] == 2, timeout=3,
             what="two held requests")
    refused = rest.post("/v1/chat/completions", json=body)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "queue_full"
    for waiter in waiters:
        waiter.join()
    assert held == [503, 503]  # the two held ones timed out waiting (max_queue_wait_s), not refused


def test_embeddings_through_the_gateway(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("search-team")
    rest = control_plane.client(key)
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "embedder", "task": "embed",
                                                 "hf_model_id": "inferstack/sim-embed"})
    assert created.status_code == 201, created.text
    wait_running(rest, created.json()["id"])
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key)
    result = client.embeddings.create(model="embedder", input=["first text", "second text"])
    assert [e.index for e in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 1 and all(isinstance(x, float) for x in result.data[0].embedding)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens > 0


def test_metrics_count_the_gateways_requests(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    dep_id = sim_deployment(control_plane, key, "counted")
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key, max_retries=0)
    for i in range(5):
        client.chat.completions.create(model="counted", messages=[{"role": "user", "content": f"{i}"}], max_tokens=1)
    metrics = control_plane.client(key).get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert samples[("inferstack_gateway_requests_total", (("code", "200"), ("deployment", dep_id)))] == 5
    assert samples[("inferstack_gateway_request_seconds_count", (("deployment", dep_id),))] == 5
    # Without a key nothing; with another tenant's key, none of this tenant's series or ids.
    anonymous = httpx.get(control_plane.url + "/metrics")
    assert anonymous.status_code == 401 and dep_id not in anonymous.text
    other = control_plane.client(control_plane.create_key("other-team")).get("/metrics")
    assert other.status_code == 200 and dep_id not in other.text
