"""Cost accounting and the saved record: replica-seconds x the profile's price, kept across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from controller_support import FakeProbe, FakeReplica, Parts, build_parts, eventually
from sqlalchemy.exc import OperationalError

from inferstack.clock import ManualClock
from inferstack.controller.recorder import Recorder
from inferstack.secrets_at_rest import TokenCipher
from inferstack.spec import DeploymentSpec, DeploymentStatus, DeploymentUpdate, ReplicaStatus
from inferstack.store import Store


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
    [restored], _ = await Recorder(parts.store, parts.clock).restore(parts.clock.now())
    assert restored.replica_seconds == pytest.approx(210)  # a restart does not reset the bill


async def test_a_status_change_is_recorded_once_with_its_reason(parts: Parts) -> None:
    deployment = await parts.create()
    await parts.actions.stop(deployment)
    await parts.actions.stop(deployment)
    [event] = [e for e in parts.events(deployment, "status") if e.data["after"] == "stopped"]
    assert event.message == "Status created -> stopped: stopped by the user"  # before the loop's first pass
    row = parts.store.get_deployment(deployment.id)
    assert row is not None and (row.status, row.status_reason) == ("stopped", "stopped by the user")


async def test_a_token_sealed_under_another_key_fails_its_deployment_with_the_cause_not_the_restart(
        store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    fields = {"hf_model_id": "org/model", "hardware_profile": "cpu"}
    gated = store.create_deployment(tenant, DeploymentSpec(name="gated", hf_token="hf_x", **fields), now=2.0)
    plain = store.create_deployment(tenant, DeploymentSpec(name="plain", **fields), now=3.0)
    other_key = Store(store.url, TokenCipher.ephemeral())  # a new home's key file, or a changed INFERSTACK_TOKEN_KEY
    try:
        restored = {d.id: d for d in (await Recorder(other_key, ManualClock()).restore(10.0))[0]}
    finally:
        other_key.engine.dispose()
    assert restored[gated.id].status is DeploymentStatus.failed and restored[gated.id].spec.hf_token is None
    assert "another key" in restored[gated.id].status_reason and "hf_x" not in restored[gated.id].status_reason
    assert restored[plain.id].status is DeploymentStatus.provisioning


async def test_a_spec_change_the_database_refuses_leaves_the_live_view_as_stored(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = await parts.create(max_replicas=2)

    def outage(*_args: object) -> None:
        raise OperationalError("UPDATE deployments", {}, Exception("connection refused"))

    monkeypatch.setattr(parts.store, "save_spec", outage)
    with pytest.raises(OperationalError):
        await parts.actions.update(deployment, DeploymentUpdate(max_replicas=5, drain_timeout_s=1))
    assert (deployment.spec.max_replicas, deployment.spec.drain_timeout_s) == (2, 120)
    assert parts.events(deployment, "updated") == []


async def test_deleted_deployments_wait_for_a_leader_to_remove_what_they_left_once(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    fields = {"hf_model_id": "org/model", "hardware_profile": "cpu"}
    ids = [store.create_deployment(tenant, DeploymentSpec(name=n, **fields), now=2.0).id for n in ("a", "b", "c", "d")]
    for deployment_id in ids[:3]:
        store.update_deployment(deployment_id, status=DeploymentStatus.deleted)
    store.update_deployment(ids[2], spec={"hardware_profile": "gone"})  # stored by another version: unreadable
    recorder = Recorder(store, ManualClock())

    left = await recorder.deleted_not_removed(10.0)
    assert {d.id for d in left} == set(ids[:2]) and all(d.status is DeploymentStatus.deleted for d in left)
    await recorder.removed(left[0])
    assert [d.id for d in await recorder.deleted_not_removed(11.0)] == [left[1].id]
