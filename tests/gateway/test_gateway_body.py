"""The gateway's body limits and engine errors, in process: a body past the limit or too slow is refused
before it is read whole or sent on, and an engine's own error shape reaches the client as OpenAI's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gateway_support import Waker, make_deployment, make_replica

from inferstack.auth import KeyRing
from inferstack.clock import ManualClock
from inferstack.fleet import Fleet, LiveDeployment
from inferstack.gateway.body import BodyLimits
from inferstack.gateway.entry import Gateway
from inferstack.server import open_database

# What vLLM 0.32 answers to a request it refuses (vllm/entrypoints/serve/engine/protocol.py ErrorResponse).
VLLM_ERROR = {"error": {"message": "max_tokens must be at most 256", "type": "BadRequestError",
                        "param": "max_tokens", "code": 400}}


class Engine:
    """A replica that answers every chat request with vLLM's error body, and counts what reached it."""

    def __init__(self) -> None:
        self.received = 0
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.server = TestServer(app, host="127.0.0.1")

    async def _chat(self, request: web.Request) -> web.Response:
        self.received += 1
        await request.read()
        return web.json_response(VLLM_ERROR, status=400)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    engine = Engine()
    await engine.server.start_server()
    yield engine
    await engine.server.close()


@pytest.fixture
async def setup(tmp_path: Path, engine: Engine) -> AsyncIterator[tuple[Gateway, LiveDeployment, str]]:
    store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    tenant, key = store.create_key("team", 0.0)
    deployment = make_deployment()
    deployment.tenant_id = tenant
    deployment.replicas["r1"] = make_replica("r1", str(engine.server.make_url("")).rstrip("/"))
    fleet = Fleet()
    fleet.add(deployment)
    clock = ManualClock()
    gateway = Gateway(fleet, KeyRing(store, clock), Waker(), clock, limits=BodyLimits(max_bytes=4096, timeout_s=0.1))
    await gateway.start()
    yield gateway, deployment, key
    await gateway.close()
    store.engine.dispose()


async def call(gateway: Gateway, key: str, chunks: list[bytes], *, pause_s: float = 0.0,
               content_length: int | None = None) -> tuple[int, dict[bytes, bytes], dict[str, Any], int]:
    """Send a body in chunks (pausing between them); return status, headers, JSON body and chunks read."""
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read == len(chunks):
            await asyncio.sleep(3600)
        if read:
            await asyncio.sleep(pause_s)
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(gateway(scope, receive, send), 5)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], dict(sent[0]["headers"]), orjson.loads(body), read


def chat_body(padding: int = 0) -> bytes:
    return orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * padding}]})


async def test_a_body_declared_too_large_is_a_413_before_a_byte_is_read(
        setup: tuple[Gateway, LiveDeployment, str], engine: Engine) -> None:
    gateway, _deployment, key = setup
    status, _headers, body, read = await call(gateway, key, [b"{}"], content_length=50_000_000)
    assert status == 413 and read == 0 and engine.received == 0
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "request_too_large"


async def test_a_chunked_body_is_cut_at_the_first_chunk_past_the_limit(
        setup: tuple[Gateway, LiveDeployment, str], engine: Engine) -> None:
    gateway, _deployment, key = setup
    chunks = [b"x" * 1000] * 50  # 50 kB announced by nothing: counted as it arrives
    status, _headers, _body, read = await call(gateway, key, chunks)
    assert status == 413 and read == 5 and engine.received == 0


async def test_a_body_slower_than_the_deadline_is_a_408(
        setup: tuple[Gateway, LiveDeployment, str], engine: Engine) -> None:
    gateway, _deployment, key = setup
    whole = chat_body()
    status, _headers, body, _read = await call(gateway, key, [whole[:5], whole[5:]], pause_s=0.5)
    assert status == 408 and body["error"]["code"] == "request_timeout" and engine.received == 0


async def test_a_body_within_the_limits_reaches_the_engine_and_its_error_comes_back_in_openais_shape(
        setup: tuple[Gateway, LiveDeployment, str], engine: Engine) -> None:
    gateway, _deployment, key = setup
    whole = chat_body(padding=3000)
    status, headers, body, _read = await call(gateway, key, [whole[:2000], whole[2000:]], pause_s=0.01)
    assert engine.received == 1 and status == 400 and headers[b"content-type"] == b"application/json"
    assert body == {"error": {"message": "max_tokens must be at most 256", "type": "invalid_request_error",
                              "param": "max_tokens", "code": None}}


async def test_batch_lines_get_the_engines_error_in_openais_shape_too(
        setup: tuple[Gateway, LiveDeployment, str], engine: Engine) -> None:
    gateway, deployment, _key = setup
    status, raw = await gateway.call(deployment.tenant_id, "/v1/chat/completions", {"model": "chat", "messages": []})
    assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
