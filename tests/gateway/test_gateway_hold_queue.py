"""Admission under load (issue 11, point 2): each replica takes its engine's capacity and no more; the
held wait in one FIFO queue, served by whichever replica turns ready or frees a slot first."""

from __future__ import annotations

import asyncio
import random

from gateway_support import Waker, eventually, make_deployment, make_replica

from inferstack.clock import ManualClock
from inferstack.engines.capacity import SIM_DEFAULT_MAX_CONCURRENCY
from inferstack.fleet import LiveDeployment
from inferstack.gateway.admission import Admission, Lease
from inferstack.spec import DeploymentStatus

FAR = 1e12
SLOTS = SIM_DEFAULT_MAX_CONCURRENCY  # the sim engine's 16 sequences at once


def gate() -> Admission:
    return Admission(Waker(), ManualClock(), 5.0, random.Random(7))


async def hold(admission: Admission, deployment: LiveDeployment, count: int) -> list[asyncio.Task[Lease]]:
    """`count` requests arriving one after another, each held before the next arrives."""
    tasks = []
    for _ in range(count):
        before = deployment.queued
        tasks.append(asyncio.create_task(admission.acquire(deployment, FAR)))
        await eventually(lambda before=before: deployment.queued == before + 1)
    return tasks


def served_on(tasks: list[asyncio.Task[Lease]]) -> list[str | None]:
    return [t.result().replica.replica_id if t.done() else None for t in tasks]


async def turn_ready(deployment: LiveDeployment, replica_id: str, expect_queued: int) -> None:
    deployment.replicas[replica_id] = make_replica(replica_id)
    deployment.notify()  # what the controller does when a replica passes its health check
    await eventually(lambda: deployment.queued == expect_queued)


async def test_a_wake_spreads_the_held_requests_over_the_replicas_as_they_turn_ready_in_arrival_order() -> None:
    admission, deployment = gate(), make_deployment(DeploymentStatus.paused)
    tasks = await hold(admission, deployment, 40)
    await turn_ready(deployment, "r1", expect_queued=40 - SLOTS)
    # The first 16 to arrive go to the first replica, and not one more: it runs at its capacity.
    assert served_on(tasks) == ["r1"] * SLOTS + [None] * (40 - SLOTS)
    assert deployment.replicas["r1"].outstanding == SLOTS
    await turn_ready(deployment, "r2", expect_queued=40 - 2 * SLOTS)
    assert served_on(tasks) == ["r1"] * SLOTS + ["r2"] * SLOTS + [None] * (40 - 2 * SLOTS)
    # r2 frees a slot first: the oldest held request takes it.
    tasks[SLOTS].result().release()
    await eventually(lambda: deployment.queued == 40 - 2 * SLOTS - 1)
    assert served_on(tasks)[2 * SLOTS:] == ["r2"] + [None] * (40 - 2 * SLOTS - 1)
    for task in tasks:
        task.cancel()  # the still-held give up; a cancel does nothing to the served
    await asyncio.gather(*tasks, return_exceptions=True)
    assert deployment.queued == 0 and deployment.queued_for_slot == 0


async def test_a_new_request_never_overtakes_a_held_one() -> None:
    admission, deployment = gate(), make_deployment(engine_args=["--max-concurrency", "2"])
    deployment.replicas["r1"] = make_replica("r1")
    first = [await admission.acquire(deployment, FAR) for _ in range(2)]
    (held,) = await hold(admission, deployment, 1)
    assert deployment.queued_for_slot == 1  # held behind a full replica, not for a wake
    first[0].release()
    newcomer = asyncio.create_task(admission.acquire(deployment, FAR))  # arrives as the slot frees
    lease = await asyncio.wait_for(held, 5)
    assert lease.replica.replica_id == "r1"
    await eventually(lambda: deployment.queued == 1)
    assert not newcomer.done()  # it waits its turn
    lease.release()
    assert (await asyncio.wait_for(newcomer, 5)).replica.replica_id == "r1"
    assert deployment.queued == 0 and deployment.queued_for_slot == 0


async def test_a_held_request_that_gives_up_leaves_no_trace_in_the_counts() -> None:
    admission, deployment = gate(), make_deployment(DeploymentStatus.paused)
    (task,) = await hold(admission, deployment, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (deployment.queued, deployment.queued_for_slot) == (0, 0)
    await turn_ready(deployment, "r1", expect_queued=0)
    assert deployment.replicas["r1"].outstanding == 0
