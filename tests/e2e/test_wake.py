"""Held requests while a deployment wakes: SSE heartbeats for streams, a bounded wait, a clear 503."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai

from support import SIM_SPEC, ControlPlane, wait_for

SLOW_START = {**SIM_SPEC, "min_replicas": 0, "engine_args": ["--startup-delay-s", "2.5"]}


def paused(rest: httpx.Client, dep_id: str) -> bool:
    return rest.get(f"/v1/deployments/{dep_id}").json()["status"] == "paused"


def test_a_stream_held_while_waking_gets_heartbeats_then_the_answer(tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_HEARTBEAT_S": "0.5"}).start()
    try:
        key = plane.create_key("waker")
        rest = plane.client(key)
        dep = rest.post("/v1/deployments", json={**SLOW_START, "name": "sleepy"}).json()
        wait_for(lambda: paused(rest, dep["id"]), timeout=10, what="paused (min_replicas 0)")
        lines: list[str] = []
        started = time.monotonic()
        body = {"model": "sleepy", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
        with rest.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        assert time.monotonic() - started >= 2.5
        heartbeats = [line for line in lines if line.startswith(":")]
        data = [line for line in lines if line.startswith("data: ")]
        assert len(heartbeats) >= 3 and lines[0].startswith(":")
        assert data[-1] == "data: [DONE]" and len(data) >= 4
    finally:
        plane.stop()


def test_a_request_that_waits_too_long_gets_a_503_with_retry_after(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("impatient")
    rest = control_plane.client(key)
    spec = {**SLOW_START, "name": "slow", "max_queue_wait_s": 0.5, "engine_args": ["--startup-delay-s", "30"]}
    dep = rest.post("/v1/deployments", json=spec).json()
    wait_for(lambda: paused(rest, dep["id"]), timeout=10, what="paused")
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("a request was answered by a replica that cannot be up yet")
    except openai.APIStatusError as exc:
        assert exc.status_code == 503 and exc.response.headers["retry-after"]
        assert "became ready within 0.5 s" in exc.message
    # The wake-up it triggered goes on: the deployment is provisioning, not refused for good.
    assert rest.get(f"/v1/deployments/{dep['id']}").json()["status"] == "provisioning"
