"""The sim engine, as a user of a vLLM server sees it: through the official `openai` client and HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sim_support import MODEL, StartSim

from inferstack.engines.sim.filler import EMBEDDING_DIM

REPO = Path(__file__).resolve().parents[2]


async def scrape(base_url: str) -> dict[str, float]:
    """Prometheus samples for the sim's model, keyed by name plus sorted non-model labels."""
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.get("model_name") == MODEL
            extra = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "model_name")
            samples[f"{sample.name}{{{extra}}}"] = sample.value
    return samples


def metric(samples: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in samples.items() if k.split("{", 1)[0] == name)


async def test_chat_completion_has_openai_shape(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim())
    before = time.time()
    reply = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=7
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert int(before) - 1 <= reply.created <= time.time() + 1
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content and len(choice.message.content.split()) == 7
    assert choice.finish_reason == "length"  # max_tokens given and reached
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7
    assert reply.usage.prompt_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7

    again = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=7
    )
    assert again.choices[0].message.content == choice.message.content  # deterministic filler

    default = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert default.usage is not None and default.usage.completion_tokens == 16
    assert default.choices[0].finish_reason == "stop"


async def test_chat_stream_delivers_chunks_then_done(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim()
    client = clients(base)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream please"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content and len(content.split()) == 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 5

    # On the wire: SSE frames, terminated by [DONE].
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()
    frames = [f for f in raw.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"


async def test_stream_first_chunk_arrives_long_before_the_end(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim(tokens_per_s=20))
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "slow"}], max_tokens=8, stream=True
    )
    arrivals: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 8
    # 7 more tokens at 20 tokens/s after the first: the first is not held back until the end. Measured
    # between arrivals, not from the start, so a loaded machine's start-up delay cannot fail it.
    assert arrivals[-1] - arrivals[0] >= 0.3


async def test_completions(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim())
    reply = await client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4)
    assert reply.id.startswith("cmpl-") and reply.object == "text_completion"
    assert reply.choices[0].text and len(reply.choices[0].text.split()) == 4
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 4

    stream = await client.completions.create(model=MODEL, prompt="Once", max_tokens=3, stream=True)
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert len("".join(c.choices[0].text for c in chunks).split()) == 3
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_embeddings_are_deterministic(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim(task="embed"))
    first = await client.embeddings.create(model=MODEL, input="the same text")  # base64 on the wire
    second = await client.embeddings.create(model=MODEL, input="the same text", encoding_format="float")
    vector = first.data[0].embedding
    assert len(vector) == EMBEDDING_DIM
    assert vector == pytest.approx(second.data[0].embedding, abs=1e-6)
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-4)

    batch = await client.embeddings.create(model=MODEL, input=["the same text", "other text"])
    assert [d.index for d in batch.data] == [0, 1]
    assert batch.data[0].embedding == pytest.approx(vector, abs=1e-6)
    assert batch.data[1].embedding != pytest.approx(vector, abs=1e-3)
    assert batch.usage.prompt_tokens >= 2

    with pytest.raises(openai.NotFoundError):  # an embedding model has no chat route
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


async def test_generate_model_has_no_embeddings_route(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim())
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model=MODEL, input="x")


async def test_api_key_guards_only_v1(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError) as info:
        await clients(base, api_key="wrong").models.list()
    assert "s3cret" not in str(info.value)
    models = await clients(base, api_key="s3cret").models.list()
    assert [m.id for m in models.data] == [MODEL]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as response:
            assert response.status == 200  # probes and scrapers need no key, as with vLLM
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
        async with http.post(f"{base}/v1/chat/completions", json={}) as response:
            assert response.status == 401  # missing header
            error = (await response.json())["error"]
            assert set(error) == {"message", "type", "param", "code"}


async def test_models_lists_every_served_name(start_sim: StartSim, clients: Any) -> None:
    client = clients(await start_sim(served_model_names=(MODEL, "alias"), max_model_len=2048))
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL, "alias"]
    assert all(m.object == "model" and m.owned_by == "inferstack-sim" for m in models.data)
    assert models.data[0].model_extra == {"root": MODEL, "parent": None, "max_model_len": 2048}
    reply = await client.chat.completions.create(
        model="alias", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    assert reply.model == "alias"


async def test_bad_requests_get_openai_errors(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim(max_model_len=64)
    client = clients(base)
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "The model `nope` does not exist." in str(not_found.value)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    assert "maximum context length is 64 tokens" in str(too_long.value)
    with pytest.raises(openai.BadRequestError):
        await client.completions.create(model=MODEL, prompt=[], max_tokens=1)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/chat/completions", data=b"{not json") as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "BadRequestError"


async def test_metrics_use_vllm_names_and_count_requests(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim()
    client = clients(base)
    before = await scrape(base)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
    ):
        assert any(key.startswith(name + "{") for key in before), name
    for _ in range(3):
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count me"}], max_tokens=4
        )
    after = await scrape(base)
    assert metric(after, "vllm:request_success_total") - metric(before, "vllm:request_success_total") == 3
    assert after["vllm:request_success_total{engine=0,finished_reason=length}"] == 3
    assert metric(after, "vllm:generation_tokens_total") == 12
    assert metric(after, "vllm:prompt_tokens_total") > 0
    assert metric(after, "vllm:e2e_request_latency_seconds_count") == 3
    assert metric(after, "vllm:time_to_first_token_seconds_count") == 3


async def test_concurrency_limit_queues_requests(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim(max_concurrency=1, ttft_ms=100)
    client = clients(base)

    async def ask() -> None:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "q"}], max_tokens=1
        )

    started = time.perf_counter()
    both = asyncio.gather(ask(), ask())
    # Wait on the state, not on a sleep: scrape until the second request is queued behind the first.
    during = await scrape(base)
    while metric(during, "vllm:num_requests_waiting") == 0 and not both.done():
        during = await scrape(base)
    await both
    elapsed = time.perf_counter() - started
    assert metric(during, "vllm:num_requests_running") == 1
    assert metric(during, "vllm:num_requests_waiting") == 1
    assert 0 < metric(during, "vllm:kv_cache_usage_perc") <= 1
    assert elapsed >= 0.19  # served one after the other
    idle = await scrape(base)
    assert metric(idle, "vllm:num_requests_running") == 0
    assert metric(idle, "vllm:num_requests_waiting") == 0


async def test_client_disconnect_mid_stream_frees_the_slot(start_sim: StartSim, clients: Any) -> None:
    base = await start_sim(max_concurrency=1, tokens_per_s=20)
    messages = [{"role": "user", "content": "long"}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 200, "stream": True}
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{base}/v1/chat/completions", json=body)
        await response.content.readline()  # the stream has started: this request holds the only slot
        response.close()  # drop the connection mid-stream (200 tokens would take 10 s)

    started = time.perf_counter()
    await clients(base).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "next"}], max_tokens=1
    )
    assert time.perf_counter() - started < 1.0
    samples = await scrape(base)
    assert metric(samples, "vllm:num_requests_running") == 0
    assert samples["vllm:request_success_total{engine=0,finished_reason=abort}"] == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_as_a_process_and_stops_on_sigterm() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    command = [
        sys.executable, "-m", "inferstack.engines.sim",
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", MODEL, "--startup-delay-s", "0.3",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        healthy_after = None
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert response.status == 200 and response.read() == b""
                    healthy_after = time.perf_counter() - started
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.02)  # port not open yet: the simulated weights are still "loading"
        assert healthy_after is not None, process.stderr.read() if process.poll() is not None else "timeout"
        assert healthy_after >= 0.3
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"sim engine ready on http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, f"exit code {code} (a negative code is death by signal, not a clean stop)"
