"""Cost accounting and the saved record: replica-seconds x the profile's price, kept across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from controller_support import FakeProbe, FakeReplica, Parts, build_parts, eventually

from inferstack.controller.recorder import Recorder
from inferstack.spec import ReplicaStatus


@pytest.fixture
async def parts(tmp_path: Path, fake_replica: FakeReplica) -> AsyncIterator[Parts]:
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    yield parts
    await parts.close()


async def test_replica_seconds_and_cost_come_from_live_replicas_times_elapsed_time(parts: Parts) -> None:
    deployment = await parts.create(hardware_profile="gpu.l4", min_replicas=2, max_replicas=2)
    price = deployment.spec.price_per_replica_hour
    assert price > 0
    await parts.loop.reconcile(deployment)
    await eventually(lambda: len(deployment.ready_replicas()) == 2)
    assert deployment.replica_seconds == 0

    parts.clock.advance(90)
    await parts.loop.reconcile(deployment)
    assert deployment.replica_seconds == pytest.approx(2 * 90)

    # A draining replica still holds its machine: it counts; a stopped one does not.
    first, second = deployment.ready_replicas()
    first.status = ReplicaStatus.draining
    second.status = ReplicaStatus.stopped
    parts.clock.advance(30)
    parts.recorder.account(deployment, parts.clock.now())
    assert deployment.replica_seconds == pytest.approx(2 * 90 + 30)

    await parts.recorder.save(deployment)
    row = parts.store.get_deployment(deployment.id)
    assert row is not None
    assert row.replica_seconds == pytest.approx(210)
    assert row.cost_usd == pytest.approx(210 / 3600 * price)
    [restored] = await Recorder(parts.store, parts.clock).restore(parts.clock.now())
    assert restored.replica_seconds == pytest.approx(210)  # a restart does not reset the bill


async def test_a_status_change_is_recorded_once_with_its_reason(parts: Parts) -> None:
    deployment = await parts.create()
    await parts.actions.stop(deployment)
    await parts.actions.stop(deployment)
    [event] = [e for e in parts.events(deployment, "status") if e.data["after"] == "stopped"]
    assert event.message == "Status provisioning -> stopped: stopped by the user"
    row = parts.store.get_deployment(deployment.id)
    assert row is not None and (row.status, row.status_reason) == ("stopped", "stopped by the user")
