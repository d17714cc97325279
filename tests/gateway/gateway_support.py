"""In-process gateway harness: a deployment in a fleet, fake replicas (small aiohttp servers in the test's
own event loop), a manual clock, and an ASGI caller that drives `Gateway` directly (no uvicorn)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from inferstack.clock import ManualClock
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.gateway.entry import Gateway
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus


def make_deployment(status: DeploymentStatus = DeploymentStatus.running, **spec: Any) -> LiveDeployment:
    fields = {"hf_model_id": "inferstack/sim-chat", "engine": "sim", "hardware_profile": "cpu", "name": "chat",
              **spec}
    return LiveDeployment(id="dep-1", tenant_id="", name="chat", spec=DeploymentSpec(**fields), status=status,
                          status_reason="", created_at=0.0, awake_since=0.0)


def make_replica(replica_id: str, url: str = "http://127.0.0.1:1", outstanding: int = 0) -> LiveReplica:
    return LiveReplica(handle=ReplicaHandle(replica_id, url, None, ""), api_key="replica-key",
                       status=ReplicaStatus.ready, started_at=0.0, outstanding=outstanding)


def closed_port_url() -> str:
    """A URL nothing listens on: connecting fails before any byte, like a replica that just died."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the event loop run until `condition()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await asyncio.sleep(0.005)


class Waker:
    """The controller's side of a wake-up: records which deployments were nudged."""

    def __init__(self) -> None:
        self.woken: list[str] = []

    def wake(self, deployment: LiveDeployment) -> None:
        self.woken.append(deployment.id)


class FakeReplica:
    """An OpenAI-ish chat endpoint. A request whose body has `"hold": true` waits for `gate` before it
    answers; a stream sends a chunk every 10 ms until `max_tokens` chunks or until the gateway hangs up."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.requests = 0
        self.hung_up = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        if body.get("hold"):
            await self.gate.wait()
        if not body.get("stream"):
            return web.json_response({"object": "chat.completion", "echo": body.get("messages")})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(body.get("max_tokens", 3)):
                await response.write(b"data: " + orjson.dumps({"n": n}) + b"\n\n")
                await asyncio.sleep(0.01)
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.hung_up.set()
            raise
        return response


@dataclass
class Call:
    """One request through the gateway's ASGI entry: what it sent back, and a way to hang up."""

    body: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.content)


@dataclass
class Harness:
    gateway: Gateway
    deployment: LiveDeployment
    clock: ManualClock
    waker: Waker
    tenant: str
    key: str

    def add_replica(self, replica_id: str, url: str, outstanding: int = 0) -> LiveReplica:
        replica = make_replica(replica_id, url, outstanding)
        self.deployment.replicas[replica_id] = replica
        self.deployment.notify()  # what the controller does when a replica passes its health check
        return replica

    def request(self, **fields: Any) -> tuple[Call, asyncio.Task[None]]:
        """Start a chat request at the ASGI entry; returns the call and the task serving it."""
        call = Call({"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields})
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": [(b"authorization", f"Bearer {self.key}".encode()),
                             (b"content-type", b"application/json")]}
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": orjson.dumps(call.body), "more_body": False}
            await call.hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            call.messages.append(message)

        return call, asyncio.create_task(self.gateway(scope, receive, send))

    async def send(self, **fields: Any) -> Call:
        call, task = self.request(**fields)
        await task
        return call
