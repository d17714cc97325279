"""Admission on its own: leases and their release, batch slots, holding, the queue and time bounds."""

from __future__ import annotations

import asyncio
import random

import pytest
from gateway_support import Waker, eventually, make_deployment, make_replica

from inferstack.clock import ManualClock
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment
from inferstack.gateway.admission import BATCH_SLOTS_PER_REPLICA, Admission
from inferstack.spec import DeploymentStatus

FAR = 1e12  # a deadline that never comes


def admission(heartbeat_s: float = 5.0, clock: ManualClock | None = None) -> tuple[Admission, Waker]:
    waker = Waker()
    return Admission(waker, clock or ManualClock(), heartbeat_s, random.Random(3)), waker


class Beats:
    """A heartbeat that counts how often admission sent it."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def with_replicas(*ids: str, status: DeploymentStatus = DeploymentStatus.running) -> LiveDeployment:
    deployment = make_deployment(status)
    for replica_id in ids:
        deployment.replicas[replica_id] = make_replica(replica_id)
    return deployment


async def test_a_lease_counts_on_its_replica_until_released_once() -> None:
    gate, _ = admission()
    deployment = with_replicas("r1")
    lease = await gate.acquire(deployment, FAR)
    assert lease.replica.replica_id == "r1" and lease.replica.outstanding == 1
    lease.release()
    lease.release()  # a second release gives nothing back twice
    assert deployment.replicas["r1"].outstanding == 0


async def test_batch_leases_hold_slots_and_leave_interactive_capacity_alone() -> None:
    gate, _ = admission()
    deployment = with_replicas("r1")
    replica = deployment.replicas["r1"]
    leases = [await gate.acquire(deployment, FAR, batch=True) for _ in range(BATCH_SLOTS_PER_REPLICA)]
    assert (replica.batch_outstanding, replica.outstanding) == (BATCH_SLOTS_PER_REPLICA, 0)
    held = asyncio.create_task(gate.acquire(deployment, FAR, batch=True))
    await eventually(lambda: deployment.queued == 1)
    interactive = await gate.acquire(deployment, FAR)  # full batch slots never hold interactive requests
    assert interactive.replica is replica and replica.outstanding == 1
    leases[0].release()  # a freed slot wakes the held batch request
    late = await asyncio.wait_for(held, 5)
    assert late.replica is replica and replica.batch_outstanding == BATCH_SLOTS_PER_REPLICA
    assert deployment.queued == 0


async def test_a_paused_deployment_is_woken_and_the_request_held_until_a_replica_is_ready() -> None:
    gate, waker = admission()
    deployment = with_replicas(status=DeploymentStatus.paused)
    held = asyncio.create_task(gate.acquire(deployment, FAR))
    await eventually(lambda: deployment.queued == 1)
    assert waker.woken == [deployment.id]
    deployment.replicas["r1"] = make_replica("r1")
    deployment.notify()
    lease = await asyncio.wait_for(held, 5)
    assert lease.replica.replica_id == "r1" and deployment.queued == 0


async def test_heartbeats_while_held() -> None:
    gate, _ = admission(heartbeat_s=0.01)
    deployment = with_replicas(status=DeploymentStatus.paused)
    beats = Beats()
    held = asyncio.create_task(gate.acquire(deployment, FAR, heartbeat=beats))
    await eventually(lambda: beats.count >= 3)
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)
    assert deployment.queued == 0  # a cancelled wait gives its place back


async def test_a_stream_held_for_a_wake_gets_its_first_heartbeat_at_once() -> None:
    gate, _ = admission(heartbeat_s=3600)  # the next one is an hour away: only the first can arrive
    deployment = with_replicas(status=DeploymentStatus.paused)
    beats = Beats()
    held = asyncio.create_task(gate.acquire(deployment, FAR, heartbeat=beats))
    await eventually(lambda: beats.count == 1)
    deployment.replicas["r1"] = make_replica("r1")
    deployment.notify()
    lease = await asyncio.wait_for(held, 5)
    assert lease.replica.replica_id == "r1" and beats.count == 1


async def test_the_queue_bound_and_the_deadline() -> None:
    clock = ManualClock()
    gate, _ = admission(clock=clock)
    deployment = with_replicas(status=DeploymentStatus.paused)
    deployment.spec = deployment.spec.model_copy(update={"max_queued_requests": 1, "max_queue_wait_s": 10})
    held = asyncio.create_task(gate.acquire(deployment, clock.now() + 10))
    await eventually(lambda: deployment.queued == 1)
    with pytest.raises(ApiError) as full:
        await gate.acquire(deployment, clock.now() + 10)
    assert (full.value.status, full.value.code, full.value.headers) == (503, "queue_full", {"Retry-After": "5"})
    clock.advance(11)
    deployment.notify()
    with pytest.raises(ApiError) as late:
        await held
    assert (late.value.status, late.value.code, late.value.headers) == (503, "no_capacity", {"Retry-After": "30"})
    assert deployment.queued == 0


async def test_a_deployment_stopped_while_a_request_waits_answers_409() -> None:
    gate, _ = admission()
    deployment = with_replicas(status=DeploymentStatus.paused)
    held = asyncio.create_task(gate.acquire(deployment, FAR))
    await eventually(lambda: deployment.queued == 1)
    deployment.status = DeploymentStatus.stopped
    deployment.notify()
    with pytest.raises(ApiError) as stopped:
        await held
    assert (stopped.value.status, stopped.value.code) == (409, "deployment_unavailable") and deployment.queued == 0


async def test_reacquire_moves_the_lease_off_the_failed_replica() -> None:
    gate, _ = admission()
    deployment = with_replicas("a", "b")
    lease = await gate.acquire(deployment, FAR, batch=True)
    failed = lease.replica
    await gate.reacquire(lease)
    assert lease.replica is not failed and lease.replica.batch_outstanding == 1 and failed.batch_outstanding == 0
    lease.release()
    assert all(r.batch_outstanding == 0 for r in deployment.replicas.values())


async def test_reacquire_falls_back_to_the_only_replica() -> None:
    gate, _ = admission()
    deployment = with_replicas("only")
    lease = await gate.acquire(deployment, FAR)
    await gate.reacquire(lease)
    assert lease.replica.replica_id == "only" and lease.replica.outstanding == 1


async def test_an_adapter_request_goes_only_to_replicas_that_have_it_loaded_and_waits_for_one() -> None:
    gate, waker = admission()
    deployment = with_replicas("plain", "tuned")
    deployment.replicas["tuned"].adapters["sql"] = "org/sql"
    leases = [await gate.acquire(deployment, FAR, adapter="sql") for _ in range(8)]
    assert {lease.replica.replica_id for lease in leases} == {"tuned"}
    for lease in leases:
        lease.release()
    held = asyncio.create_task(gate.acquire(deployment, FAR, adapter="law"))  # loaded nowhere yet
    await eventually(lambda: deployment.queued == 1)
    assert waker.woken == []  # replicas are ready: nothing to wake, the adapter is on its way
    deployment.replicas["plain"].adapters["law"] = "org/law"  # what AdapterSync does once vLLM loaded it
    deployment.notify()
    lease = await asyncio.wait_for(held, 5)
    assert lease.replica.replica_id == "plain" and deployment.queued == 0



async def test_a_request_held_after_the_queue_emptied_and_refilled_is_still_served() -> None:
    """Two slots free at once: the held request and a newcomer take them, and the newcomer's leaving drops
    the emptied queue. A request held next waits in a new queue, which the first one, leaving later, once
    dropped by its key: that request was never served (a batch line stayed in progress for ever)."""
    gate, _ = admission()
    deployment = with_replicas("r1")
    leases = [await gate.acquire(deployment, FAR, batch=True) for _ in range(BATCH_SLOTS_PER_REPLICA)]
    first = asyncio.create_task(gate.acquire(deployment, FAR, batch=True))
    await eventually(lambda: deployment.queued == 1)
    leases[0].release()
    leases[1].release()
    newcomer = asyncio.create_task(gate.acquire(deployment, FAR, batch=True))
    held_next = asyncio.create_task(gate.acquire(deployment, FAR, batch=True))
    await asyncio.wait_for(asyncio.gather(first, newcomer), 5)
    leases[2].release()
    served = await asyncio.wait_for(held_next, 5)
    assert served.replica.replica_id == "r1" and deployment.queued == 0
