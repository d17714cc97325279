"""Real vLLM replicas, end to end: `inferstack serve` launches the vLLM OpenAI server on this CPU with a
tiny random-weight Llama the test builds, and the official openai client talks to it over HTTP.

Needs the vLLM CPU environment (`bash .ci/setup-vllm`; `.ci/test` builds it and sets
INFERSTACK_VLLM_PYTHON). Each replica start takes about a minute on 2 cores.
"""

from __future__ import annotations

import time

import httpx
import openai
import psutil
import pytest

from inferstack.providers import orphans
from inferstack.providers.reaper import PARENT_PID_ENV
from support import TinyVllm, children_of, wait_for, wait_running

pytestmark = pytest.mark.vllm


def test_chat_streaming_and_models_through_the_openai_client(tiny_vllm: TinyVllm) -> None:
    control, key, deployment = tiny_vllm
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key)
    answer = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                            max_tokens=8)
    assert answer.id and answer.created > 0 and answer.model == "tiny"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason in ("length", "stop")
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 8
    by_id = client.chat.completions.create(model=str(deployment["id"]), max_tokens=2,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert by_id.model == "tiny"  # vLLM names its first served name: the deployment's name
    # The same logprobs call the sim engine's tests make, answered in the same shape by vLLM.
    scored = client.chat.completions.create(model="tiny", max_tokens=3, logprobs=True, top_logprobs=2,
                                            messages=[{"role": "user", "content": "Hi"}]).choices[0]
    assert scored.logprobs is not None and scored.logprobs.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in scored.logprobs.content)

    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Stream"}],
                                            max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert len(chunks) >= 3 and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    assert [m.id for m in client.models.list().data] == [deployment["id"]]
    # The replica's own port refuses callers without its per-replica key.
    replica_url = control.client(key).get("/v1/deployments/tiny").json()["replicas"][0]["url"]
    assert httpx.get(replica_url + "/v1/models").status_code == 401
    assert "hf_must_not_leak" not in control.log_text()


def test_vllms_own_refusal_reaches_the_client_in_openais_error_shape(tiny_vllm: TinyVllm) -> None:
    control, key, _ = tiny_vllm
    too_long = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100_000}
    raw = control.client(key).post("/v1/chat/completions", json=too_long)
    assert raw.status_code == 400 and raw.headers["content-type"] == "application/json"
    error = raw.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]  # vLLM says "BadRequestError"
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**too_long)  # type: ignore[call-overload]
    assert refused.value.type == "invalid_request_error"


def test_a_vllm_replica_holds_no_control_plane_setting_and_dies_with_its_reaper(tiny_vllm: TinyVllm) -> None:
    control, key, _ = tiny_vllm
    replica_id = wait_running(control.client(key), "tiny", timeout=400)["replicas"][0]["id"]
    assert control.process is not None
    [reaper] = [p for p in psutil.Process(control.process.pid).children(recursive=True)
                if "inferstack.providers.reaper" in " ".join(p.cmdline())
                and p.environ().get(orphans.REPLICA_ID_ENV) == replica_id]
    engines = reaper.children(recursive=True)  # the API server, and the engine core it started
    [api_server] = [p for p in engines if "vllm.entrypoints.openai.api_server" in " ".join(p.cmdline())]
    assert any("EngineCore" in " ".join(p.cmdline()) for p in engines), [p.cmdline() for p in engines]
    environ = api_server.environ()  # the engine core's title is written over what /proc shows of its own
    assert {name for name in environ if name.startswith("INFERSTACK_")} == {
        orphans.REPLICA_OWNER_ENV, orphans.REPLICA_ID_ENV, PARENT_PID_ENV}  # no INFERSTACK_VLLM_PYTHON, no HOME
    assert environ["HF_TOKEN"] == "hf_must_not_leak" and environ["VLLM_API_KEY"]  # its own secrets only

    reaper.kill()  # SIGKILL: the reaper gets no chance to stop anything; the engine core outlives the API server

    def engines_gone() -> bool:
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in engines)

    wait_for(engines_gone, timeout=10, what="vLLM to die with its reaper")


def test_a_paused_vllm_deployment_wakes_for_a_request_and_serves_it(tiny_vllm: TinyVllm) -> None:
    control, key, _ = tiny_vllm
    rest = control.client(key)
    rest.patch("/v1/deployments/tiny", json={"min_replicas": 0, "idle_timeout_s": 1}).raise_for_status()
    wait_for(lambda: rest.get("/v1/deployments/tiny").json()["status"] == "paused", timeout=60, what="paused")
    assert control.process is not None
    wait_for(lambda: children_of(control.process.pid) == [], timeout=30, what="the vLLM processes to exit")
    rest.patch("/v1/deployments/tiny", json={"idle_timeout_s": 3600}).raise_for_status()

    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, timeout=600, max_retries=0)
    started = time.monotonic()
    answer = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Wake up"}],
                                            max_tokens=4)
    held_s = time.monotonic() - started
    assert answer.choices[0].message.content is not None and held_s > 5  # it really waited for a cold start
    events = [e["kind"] for e in rest.get("/v1/deployments/tiny/events").json()["data"]]
    assert "resumed" in events and events.count("replica_ready") >= 2
