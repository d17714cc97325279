"""The gateway end to end on `sim` replicas: the official openai client over real HTTP."""

from __future__ import annotations

import os
import signal
from collections import Counter

import openai
import psutil

from support import SIM_SPEC, ControlPlane, children_of, wait_for, wait_running


def test_two_replicas_share_the_traffic(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "pair", "min_replicas": 2, "max_replicas": 2}).json()
    running = wait_for(lambda: (d := wait_running(rest, dep["id"]))["ready_replicas"] == 2 and d,
                       timeout=60, what="two ready replicas")
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key)
    served_by: Counter[str] = Counter()
    for i in range(40):
        raw = client.chat.completions.with_raw_response.create(
            model="pair", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=4)
        answer = raw.parse()
        assert answer.id and answer.created and answer.usage.completion_tokens == 4
        assert answer.model == "pair" and answer.choices[0].message.content
        served_by[raw.headers["x-inferstack-replica"]] += 1
    assert set(served_by) == {r["id"] for r in running["replicas"]}
    assert min(served_by.values()) >= 8, served_by
    # The controller reads each replica's own queue gauges (vLLM's metric names) for `status`.
    wait_for(lambda: all(r["engine_running"] is not None for r in rest.get(f"/v1/deployments/{dep['id']}").json()
                         ["replicas"]), timeout=10, what="engine gauges scraped")


def test_chat_streaming_completions_and_models(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "streamer"}).json()
    wait_running(rest, dep["id"])
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key)
    chunks = list(client.chat.completions.create(
        model=dep["id"], messages=[{"role": "user", "content": "stream please"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 6 and text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    completion = client.completions.create(model="streamer", prompt="Once upon a time", max_tokens=3)
    assert completion.choices[0].text and completion.usage.completion_tokens == 3
    assert [m.id for m in client.models.list().data] == [dep["id"]]
    with openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key) as c:
        try:
            c.embeddings.create(model="streamer", input="text")
            raise AssertionError("a generate deployment answered /v1/embeddings")
        except openai.BadRequestError as exc:
            assert "embeddings" in str(exc)
    with openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key) as c:
        try:
            c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
            raise AssertionError("an unknown model was answered")
        except openai.NotFoundError as exc:
            assert "no-such-model" in str(exc)


def test_killing_the_control_plane_leaves_no_replica_behind(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "min_replicas": 2, "max_replicas": 2}).json()
    wait_for(lambda: wait_running(rest, dep["id"])["ready_replicas"] == 2, timeout=60, what="two replicas")
    assert control_plane.process is not None
    replicas = children_of(control_plane.process.pid)
    assert len(replicas) >= 4  # a reaper and an engine per replica
    os.kill(control_plane.process.pid, signal.SIGKILL)
    control_plane.process.wait()

    def all_gone() -> bool:
        return not [p for p in replicas if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]

    wait_for(all_gone, timeout=20, what=f"replica processes {replicas} to exit")


def test_a_crashed_replica_is_replaced_and_recorded(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "crashy"}).json()
    first = wait_running(rest, dep["id"])["replicas"][0]
    assert control_plane.process is not None
    engines = [p for p in psutil.Process(control_plane.process.pid).children(recursive=True)
               if "inferstack.engines.sim" in " ".join(p.cmdline()) and "reaper" not in " ".join(p.cmdline())]
    assert len(engines) == 1
    engines[0].kill()

    def replaced() -> bool:
        replicas = rest.get(f"/v1/deployments/{dep['id']}").json()["replicas"]
        return [r["status"] for r in replicas] == ["ready"] and replicas[0]["id"] != first["id"]

    wait_for(replaced, timeout=30, what="a new ready replica")
    events = rest.get(f"/v1/deployments/{dep['id']}/events").json()["data"]
    failed = [e for e in events if e["kind"] == "replica_failed"]
    assert failed and first["id"] in failed[0]["message"] and "exited with code" in failed[0]["message"]
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key)
    assert client.chat.completions.create(model="crashy", messages=[{"role": "user", "content": "ok?"}],
                                          max_tokens=2).choices[0].message.content


def test_a_caller_that_hangs_up_mid_stream_frees_the_replica(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "slowpoke",
                                             "engine_args": ["--ttft-ms", "10", "--tokens-per-s", "10"]}).json()
    wait_running(rest, dep["id"])
    body = {"model": "slowpoke", "messages": [{"role": "user", "content": "tell me a long story"}],
            "max_tokens": 200, "stream": True}
    with rest.stream("POST", "/v1/chat/completions", json=body) as response:
        for _ in zip(range(3), response.iter_lines(), strict=False):
            pass  # read a few tokens, then hang up (200 tokens at 10/s would take 20 s)

    def engine_idle() -> bool:
        replica = rest.get(f"/v1/deployments/{dep['id']}").json()["replicas"][0]
        return replica["engine_running"] == 0 and replica["in_flight"] == 0

    wait_for(engine_idle, timeout=5, what="the replica to drop the abandoned stream")


def test_a_reshaping_update_replaces_replicas_without_a_gap(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    rest = control_plane.client(key)
    slow_start = ["--startup-delay-s", "1.5"]
    dep = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "rolling", "engine_args": slow_start}).json()
    old = wait_running(rest, dep["id"])["replicas"][0]["id"]
    patched = rest.patch(f"/v1/deployments/{dep['id']}", json={"engine_args": [*slow_start, "--ttft-ms", "5"]})
    assert patched.status_code == 200
    client = openai.OpenAI(base_url=control_plane.url + "/v1", api_key=key, max_retries=0)
    served_by: list[str] = []

    def replaced() -> bool:
        # Every request during the replacement is answered, and a ready replica is there at every
        # look: no gap (a state check, not a short client timeout that a slow machine trips).
        raw = client.chat.completions.with_raw_response.create(
            model="rolling", messages=[{"role": "user", "content": "still there?"}], max_tokens=2, timeout=30)
        served_by.append(raw.headers["x-inferstack-replica"])
        info = rest.get(f"/v1/deployments/{dep['id']}").json()
        assert info["ready_replicas"] >= 1, info["replicas"]
        replicas = info["replicas"]
        return [r["status"] for r in replicas] == ["ready"] and replicas[0]["id"] != old

    wait_for(replaced, timeout=30, interval=0.1, what="the new replica to replace the old one")
    assert served_by[0] == old and served_by[-1] != old
