"""How a request ends when one side goes away: a replica dying mid-answer, a caller hanging up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gateway_support import FakeReplica, Harness, eventually
from prometheus_client import REGISTRY

from inferstack.gateway.entry import CLIENT_CLOSED
from inferstack.spec import DeploymentStatus


@pytest.fixture
async def dying_replica() -> AsyncIterator[str]:
    """A replica that sends two chunks (of a stream, or of a plain answer) and then dies: its connection is
    reset without the end of the chunked body."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        content_type = "text/event-stream" if body.get("stream") else "application/json"
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for n in range(2):
            await response.write(b"data: " + orjson.dumps({"n": n}) + b"\n\n")
            await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def count(code: int) -> float:
    """Requests of the harness's deployment counted under `code` at /metrics so far."""
    labels = {"deployment": "dep-1", "code": str(code)}
    return REGISTRY.get_sample_value("inferstack_gateway_requests_total", labels) or 0.0


async def test_a_stream_cut_by_a_dying_replica_ends_with_an_error_event(harness: Harness, dying_replica: str) -> None:
    replica = harness.add_replica("r1", dying_replica)
    errors_before = count(502)
    call = await harness.send(stream=True)

    assert call.status == 200
    assert call.messages[-1].get("more_body", False) is False  # the body is ended, not broken off
    events = [e for e in call.content.split(b"\n\n") if e]
    assert events[:2] == [b'data: {"n":0}', b'data: {"n":1}']  # what came before the cut went through
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["code"] == "replica_disconnected" and "incomplete" in error["message"]
    assert replica.outstanding == 0 and count(502) == errors_before + 1


async def test_a_plain_answer_cut_by_a_dying_replica_is_a_502_not_a_truncated_200(
        harness: Harness, dying_replica: str) -> None:
    harness.add_replica("r1", dying_replica)
    call = await harness.send()
    assert call.status == 502 and call.json()["error"]["code"] == "replica_disconnected"


async def test_a_caller_hanging_up_mid_stream_counts_as_client_closed(
        harness: Harness, replica_server: FakeReplica) -> None:
    harness.add_replica("r1", replica_server.url)
    before = {code: count(code) for code in (200, 502, CLIENT_CLOSED)}
    call, task = harness.request(stream=True, max_tokens=1000)
    await eventually(lambda: len(call.messages) >= 2)
    call.hang_up.set()
    await task
    assert count(CLIENT_CLOSED) == before[CLIENT_CLOSED] + 1
    assert (count(200), count(502)) == (before[200], before[502])
    await asyncio.wait_for(replica_server.hung_up.wait(), 5)


async def test_a_caller_hanging_up_while_held_leaves_the_queue_at_once(harness: Harness) -> None:
    deployment = harness.deployment
    deployment.status = DeploymentStatus.paused
    before = count(CLIENT_CLOSED)
    call, task = harness.request()
    await eventually(lambda: deployment.queued == 1)
    call.hang_up.set()
    await asyncio.wait_for(task, 5)  # not at max_queue_wait_s
    assert deployment.queued == 0 and count(CLIENT_CLOSED) == before + 1 and not call.messages


async def test_a_held_request_learns_why_its_deployment_failed(harness: Harness) -> None:
    deployment = harness.deployment
    deployment.status = DeploymentStatus.provisioning
    call, task = harness.request()
    await eventually(lambda: deployment.queued == 1)
    deployment.status, deployment.status_reason = DeploymentStatus.failed, "engine 'vllm' needs vLLM"
    deployment.notify()
    await task
    assert call.status == 503
    assert call.json()["error"]["message"] == f"Deployment {deployment.id} is failed: engine 'vllm' needs vLLM"
