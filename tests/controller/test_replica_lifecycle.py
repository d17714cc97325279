"""The replica lifecycle driven by the loop, in-process: a fake provider, the manual clock, SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from controller_support import HEALTH_POLL_S, FakeProbe, FakeReplica, Parts, build_parts, eventually

from inferstack.clock import ManualClock
from inferstack.controller.replicas import Verdict, provider_verdict
from inferstack.spec import DeploymentStatus, DeploymentUpdate, ReplicaStatus


async def advance_until(clock: ManualClock, condition: Callable[[], Any], step: float, limit: int = 400) -> None:
    """Move the clock `step` at a time, letting background tasks run in between, until `condition()`."""
    for _ in range(limit):
        if condition():
            return
        clock.advance(step)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{condition} never held")


@pytest.fixture
async def healthy(tmp_path: Path, fake_replica: FakeReplica) -> AsyncIterator[Parts]:
    """Parts whose replicas are all healthy at once."""
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    yield parts
    await parts.close()


async def test_a_replica_is_probed_on_the_clock_until_healthy_then_the_deployment_runs(
        tmp_path: Path, fake_replica: FakeReplica) -> None:
    fake_replica.alive = False
    parts = await build_parts(tmp_path, fake_replica.url)  # the real HTTP probe
    try:
        deployment = await parts.create()
        decision = await parts.loop.reconcile(deployment)
        assert decision.desired == 1 and deployment.status is DeploymentStatus.provisioning
        replica = await eventually(lambda: next(iter(deployment.replicas.values()), None))
        await asyncio.sleep(0.1)
        assert replica.status is ReplicaStatus.starting and deployment.ready_replicas() == []

        fake_replica.alive = True
        await advance_until(parts.clock, lambda: deployment.status is DeploymentStatus.running, HEALTH_POLL_S)
        assert replica.status is ReplicaStatus.ready
        assert fake_replica.keys_seen and set(fake_replica.keys_seen) == {replica.api_key}
        assert parts.replica_rows(deployment)[replica.replica_id].status == ReplicaStatus.ready
        [ready_event] = parts.events(deployment, "replica_ready")
        assert replica.ready_at is not None and replica.ready_at > replica.started_at  # it took clock time
        assert ready_event.data["startup_s"] == pytest.approx(replica.ready_at - replica.started_at)

        await parts.loop.reconcile(deployment)  # the next pass reads the engine's own queue
        assert (replica.engine_running, replica.engine_waiting) == (2, 1)
    finally:
        await parts.close()


async def test_three_replicas_exiting_before_ready_fail_the_deployment_with_the_reason(tmp_path: Path) -> None:
    parts = await build_parts(tmp_path, "http://127.0.0.1:9", FakeProbe())
    try:
        parts.provider.exit_on_start = 1
        deployment = await parts.create()
        for attempt in range(1, 4):
            await parts.loop.reconcile(deployment)  # reaps the last one (if any), starts another
            await eventually(lambda n=attempt: len(parts.replica_rows(deployment)) == n and deployment.replicas)
            assert deployment.status is DeploymentStatus.provisioning
        decision = await parts.loop.reconcile(deployment)

        assert deployment.status is DeploymentStatus.failed and decision.desired == 0
        assert deployment.status_reason == ("3 replicas in a row failed to start; last: exited with "
                                            "code 1: loading weights | boom: no such model")
        rows = parts.replica_rows(deployment)
        assert sorted(rows) == sorted(parts.provider.started)
        assert {(r.status, r.reason) for r in rows.values()} == {
            (ReplicaStatus.failed, "exited with code 1: loading weights | boom: no such model")}
        await parts.loop.tick()  # a failed deployment is left alone: no fourth start
        assert len(parts.provider.started) == 3 and deployment.replicas == {}
    finally:
        await parts.close()


async def test_a_drain_waits_for_in_flight_requests_then_stops_the_replica(healthy: Parts) -> None:
    deployment = await healthy.create()
    await healthy.loop.reconcile(deployment)
    [replica] = await eventually(lambda: deployment.ready_replicas())
    replica.outstanding, replica.batch_outstanding = 1, 1

    healthy.replicas.drain(deployment, replica)
    assert replica.status is ReplicaStatus.draining and deployment.ready_replicas() == []
    for _ in range(5):  # 5 s pass with requests in flight: it keeps serving them
        healthy.clock.advance(1.0)
        await asyncio.sleep(0.02)
    assert healthy.provider.stopped == [] and replica.replica_id in deployment.replicas

    replica.outstanding, replica.batch_outstanding = 0, 0
    await advance_until(healthy.clock, lambda: healthy.provider.stopped, 0.05)
    await eventually(lambda: healthy.events(deployment, "replica_stopped"))
    assert healthy.provider.stopped == [replica.replica_id] and deployment.replicas == {}
    row = healthy.replica_rows(deployment)[replica.replica_id]
    assert (row.status, row.reason) == (ReplicaStatus.stopped, "drained")
    assert healthy.events(deployment, "replica_stopped")[0].data["cut_off_requests"] == 0


async def test_a_drain_cuts_off_what_is_still_in_flight_at_its_timeout(healthy: Parts) -> None:
    deployment = await healthy.create(drain_timeout_s=10)
    await healthy.loop.reconcile(deployment)
    [replica] = await eventually(lambda: deployment.ready_replicas())
    replica.outstanding = 1
    started = healthy.clock.now()

    healthy.replicas.drain(deployment, replica)
    await advance_until(healthy.clock, lambda: healthy.provider.stopped, 0.5)
    assert healthy.clock.now() - started >= 10
    await eventually(lambda: healthy.replica_rows(deployment)[replica.replica_id].status == ReplicaStatus.stopped)
    assert healthy.replica_rows(deployment)[replica.replica_id].reason == "drain timeout: 1 requests cut off"


async def test_a_reshaping_update_retires_outdated_replicas_only_as_replacements_become_ready(
        tmp_path: Path, fake_replica: FakeReplica) -> None:
    probe = FakeProbe()
    parts = await build_parts(tmp_path, fake_replica.url, probe)
    try:
        deployment = await parts.create(min_replicas=2, max_replicas=2)
        await parts.loop.reconcile(deployment)
        old = set(await eventually(lambda: len(deployment.replicas) == 2 and list(deployment.replicas)))
        probe.healthy_ids |= old
        await advance_until(parts.clock, lambda: len(deployment.ready_replicas()) == 2, HEALTH_POLL_S)

        await parts.actions.update(deployment, DeploymentUpdate(max_model_len=2048))
        await parts.loop.reconcile(deployment)  # outdated ones do not count: two replacements start
        new = set(await eventually(lambda: len(deployment.replicas) == 4 and set(deployment.replicas) - old))
        assert {r.replica_id for r in deployment.ready_replicas()} == old  # the old shape serves meanwhile

        for n, replacement in enumerate(sorted(new), start=1):
            probe.healthy_ids.add(replacement)
            await advance_until(parts.clock, lambda r=replacement: deployment.replicas[r].status is ReplicaStatus.ready,
                                HEALTH_POLL_S)
            await parts.loop.reconcile(deployment)  # one ready replacement retires one outdated replica
            await advance_until(parts.clock, lambda n=n: len(parts.provider.stopped) == n, 0.05)
            assert len([r for r in deployment.ready_replicas() if r.outdated]) == 2 - n
            assert len(deployment.ready_replicas()) == 2  # never fewer serving than desired

        assert set(parts.provider.stopped) == old and set(deployment.replicas) == new
        assert deployment.status is DeploymentStatus.running
    finally:
        await parts.close()


@pytest.mark.parametrize(("status", "exit_code", "serving", "verdict"), [
    (ReplicaStatus.ready, None, True, None),
    (ReplicaStatus.ready, None, False, Verdict.not_serving),  # out of the rotation, not replaced
    (ReplicaStatus.ready, 1, True, Verdict.exited),
    (ReplicaStatus.ready, 1, False, Verdict.exited),  # gone beats not ready: it is replaced
    (ReplicaStatus.starting, None, False, None),  # not ready yet is what starting means
    (ReplicaStatus.starting, 1, False, Verdict.exited),
    (ReplicaStatus.draining, 1, False, None),  # on its way out whatever it says
])
def test_what_the_providers_report_means_for_a_replica(status: ReplicaStatus, exit_code: int | None, serving: bool,
                                                      verdict: Verdict | None) -> None:
    assert provider_verdict(status, exit_code, serving) is verdict
