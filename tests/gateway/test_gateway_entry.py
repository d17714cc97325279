"""The gateway in process: its ASGI entry called directly, fake replicas on free ports, a manual clock."""

from __future__ import annotations

import asyncio

from gateway_support import FakeReplica, Harness, closed_port_url, eventually

from inferstack.gateway.admission import BATCH_SLOTS_PER_REPLICA
from inferstack.gateway.entry import RECONNECT_PAUSE_S, RECONNECT_WINDOW_S
from inferstack.spec import DeploymentStatus, ReplicaStatus


async def test_a_request_held_while_paused_goes_when_a_replica_turns_ready(
        harness: Harness, replica_server: FakeReplica) -> None:
    deployment = harness.deployment
    deployment.status = DeploymentStatus.paused
    call, task = harness.request()
    await eventually(lambda: deployment.queued == 1)
    assert harness.waker.woken and set(harness.waker.woken) == {deployment.id}
    assert not call.messages  # a plain request waits silently
    replica = harness.add_replica("r1", replica_server.url)
    await task
    assert call.status == 200 and call.json()["object"] == "chat.completion"
    assert call.headers[b"x-inferstack-replica"] == b"r1"
    assert deployment.queued == 0 and replica.outstanding == 0


async def test_a_held_stream_gets_heartbeats_then_the_stream(harness: Harness, replica_server: FakeReplica) -> None:
    harness.deployment.status = DeploymentStatus.paused
    call, task = harness.request(stream=True, max_tokens=2)
    await eventually(lambda: len(call.messages) >= 3)  # the 200 start, then heartbeats every 0.05 s
    assert call.status == 200 and call.headers[b"content-type"] == b"text/event-stream"
    harness.add_replica("r1", replica_server.url)
    await task
    lines = [line for line in call.content.split(b"\n") if line]
    assert lines[0] == b": waiting for a replica to start"
    assert [line for line in lines if line.startswith(b"data: ")] == [b'data: {"n":0}', b'data: {"n":1}',
                                                                       b"data: [DONE]"]


async def test_the_wait_is_bounded_by_max_queue_wait_s(harness: Harness) -> None:
    deployment = harness.deployment
    deployment.status = DeploymentStatus.paused
    deployment.spec = deployment.spec.model_copy(update={"max_queue_wait_s": 30})
    call, task = harness.request()
    await eventually(lambda: deployment.queued == 1)
    harness.clock.advance(31)
    deployment.notify()  # any wake-up re-checks the deadline
    await task
    assert call.status == 503 and call.headers[b"retry-after"] == b"30"
    assert call.json()["error"]["code"] == "no_capacity" and deployment.queued == 0


async def test_a_connection_that_fails_before_the_first_byte_is_retried_on_another_replica(
        harness: Harness, replica_server: FakeReplica) -> None:
    dead = harness.add_replica("dead", closed_port_url())
    live = harness.add_replica("live", replica_server.url, outstanding=3)  # busier: the dead one is tried first
    call = await harness.send()
    assert call.status == 200 and call.headers[b"x-inferstack-replica"] == b"live"
    assert (dead.outstanding, live.outstanding) == (0, 3)


async def test_replicas_that_keep_refusing_connections_are_a_502_after_the_reconnect_window(
        harness: Harness) -> None:
    first, second = harness.add_replica("a", closed_port_url()), harness.add_replica("b", closed_port_url())
    call, task = harness.request()
    waited = 0.0
    while not task.done() and waited <= RECONNECT_WINDOW_S + 1:
        await asyncio.sleep(0.01)
        harness.clock.advance(RECONNECT_PAUSE_S)
        waited += RECONNECT_PAUSE_S
    await task
    assert waited >= RECONNECT_WINDOW_S  # it kept trying as long as a failover takes, not less
    assert call.status == 502 and call.json()["error"]["code"] == "replica_unreachable"
    assert first.outstanding == second.outstanding == 0


async def test_a_request_whose_replicas_died_is_held_and_served_by_the_replica_that_replaces_them(
        harness: Harness, replica_server: FakeReplica) -> None:
    dead = harness.add_replica("dead", closed_port_url())
    call, task = harness.request()
    await asyncio.sleep(0.05)
    assert not task.done()  # not a 502: a failover may be under way
    # The new leader forgets the dead replica and starts another, which becomes ready.
    harness.deployment.replicas.pop("dead").status = ReplicaStatus.stopped
    harness.clock.advance(RECONNECT_PAUSE_S)
    await asyncio.sleep(0.05)
    harness.add_replica("new", replica_server.url)
    await task
    assert call.status == 200 and call.headers[b"x-inferstack-replica"] == b"new"
    assert dead.outstanding == 0


async def test_batch_requests_use_their_slots_and_never_hold_up_interactive_ones(
        harness: Harness, replica_server: FakeReplica) -> None:
    replica = harness.add_replica("r1", replica_server.url)
    body = {"model": "chat", "messages": [{"role": "user", "content": "line"}], "hold": True}
    lines = [asyncio.create_task(harness.gateway.call(harness.tenant, "/v1/chat/completions", body))
             for _ in range(BATCH_SLOTS_PER_REPLICA + 1)]
    await eventually(lambda: replica.batch_outstanding == BATCH_SLOTS_PER_REPLICA and harness.deployment.queued == 1)
    interactive = await harness.send()  # the replica's batch slots are full; interactive traffic still goes
    assert interactive.status == 200 and replica.outstanding == 0
    assert replica.batch_outstanding == BATCH_SLOTS_PER_REPLICA and harness.deployment.queued == 1
    replica_server.gate.set()
    assert [status for status, _ in await asyncio.gather(*lines)] == [200] * (BATCH_SLOTS_PER_REPLICA + 1)
    assert replica.batch_outstanding == 0 and harness.deployment.queued == 0


async def test_the_queue_bound_answers_503_at_once(harness: Harness) -> None:
    deployment = harness.deployment
    deployment.status = DeploymentStatus.paused
    deployment.spec = deployment.spec.model_copy(update={"max_queued_requests": 1})
    _, held = harness.request()
    await eventually(lambda: deployment.queued == 1)
    refused = await harness.send()
    assert refused.status == 503 and refused.headers[b"retry-after"] == b"5"
    assert refused.json()["error"]["code"] == "queue_full"
    held.cancel()  # the caller goes away while held: its place in the queue is given back
    await asyncio.gather(held, return_exceptions=True)
    assert deployment.queued == 0


async def test_a_caller_hanging_up_mid_stream_releases_the_replica(
        harness: Harness, replica_server: FakeReplica) -> None:
    replica = harness.add_replica("r1", replica_server.url)
    call, task = harness.request(stream=True, max_tokens=1000)
    await eventually(lambda: len(call.messages) >= 2)  # headers and a first chunk went out
    assert replica.outstanding == 1
    call.hang_up.set()
    await task
    assert replica.outstanding == 0
    await asyncio.wait_for(replica_server.hung_up.wait(), 5)  # the engine's connection was closed too


async def test_a_cancelled_request_releases_the_replica_before_any_response(
        harness: Harness, replica_server: FakeReplica) -> None:
    replica = harness.add_replica("r1", replica_server.url)
    _, task = harness.request(hold=True)
    await eventually(lambda: replica_server.requests == 1)
    assert replica.outstanding == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert replica.outstanding == 0
