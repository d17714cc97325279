"""Two instances on one store, in process: the leader runs the controller, a follower mirrors the fleet
and its users' changes reach the leader through the rows (`controller/sync.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from controller_support import FakeProbe, FakeProvider, FakeReplica, Parts, adapter_cache, build_parts, eventually

from inferstack.controller.actions import DeploymentActions
from inferstack.controller.adapters import AdapterSync
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.controller.sync import FleetSync, PollingFeed
from inferstack.controller.window_exchange import FRESH_S, WindowExchange
from inferstack.fleet import Fleet
from inferstack.spec import DeploymentSpec, DeploymentStatus, DeploymentUpdate, ReplicaStatus


@dataclass
class Follower:
    fleet: Fleet
    provider: FakeProvider
    sync: FleetSync
    actions: DeploymentActions


@dataclass
class Pair:
    leader: Parts
    leader_sync: FleetSync
    follower: Follower


def follower_of(parts: Parts, tmp_path: Path) -> Follower:
    fleet, provider = Fleet(), FakeProvider("http://127.0.0.1:9", tmp_path)
    recorder = Recorder(parts.store, parts.clock)
    replicas = ReplicaLifecycle(provider, recorder, FakeProbe(), parts.clock, lambda: None)
    sync = FleetSync(parts.store, fleet, PollingFeed(), replicas, parts.clock, lambda: None, resync_s=3600)
    adapters = AdapterSync(recorder, adapter_cache(tmp_path))
    actions = DeploymentActions(fleet, recorder, replicas, adapters, parts.clock, lambda: None, leading=lambda: False)
    return Follower(fleet, provider, sync, actions)


def ready_rows(parts: Parts, deployment_id: str) -> int:
    """Ready replicas as the store has them, once the deployment's row says running too."""
    row = parts.store.get_deployment(deployment_id)
    if row is None or row.status != DeploymentStatus.running:
        return 0
    return sum(r.status == ReplicaStatus.ready for r in parts.store.list_replicas(deployment_id))


@pytest.fixture
async def pair(tmp_path: Path, fake_replica: FakeReplica) -> AsyncIterator[Pair]:
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    leader_sync = FleetSync(parts.store, parts.fleet, PollingFeed(), parts.replicas, parts.clock, lambda: None,
                            resync_s=3600)
    follower = follower_of(parts, tmp_path)
    await leader_sync.start(lambda: True)
    await follower.sync.start(lambda: False)
    yield Pair(parts, leader_sync, follower)
    await follower.sync.stop()
    await leader_sync.stop()
    await parts.close()


async def test_a_follower_routes_to_the_replicas_the_leader_runs(pair: Pair) -> None:
    leader = pair.leader
    deployment = await leader.create(name="chat", min_replicas=2, max_replicas=2)
    await leader.loop.reconcile(deployment)
    await eventually(lambda: ready_rows(leader, deployment.id) == 2)

    await pair.follower.sync.refresh()
    mirrored = pair.follower.fleet.resolve(leader.tenant, "chat")
    assert mirrored is not None and mirrored.status is DeploymentStatus.running
    assert {(r.replica_id, r.url, r.api_key) for r in mirrored.ready_replicas()} == {
        (r.replica_id, r.url, r.api_key) for r in deployment.ready_replicas()}
    assert all(r.api_key for r in mirrored.ready_replicas())  # the follower can call them

    # A replica drained by the leader leaves the follower's routing at its next refresh.
    leader.replicas.shrink(deployment, 1)
    await eventually(lambda: len(deployment.replicas) == 1)
    await pair.follower.sync.refresh()
    assert len(mirrored.ready_replicas()) == 1


async def test_a_request_held_on_a_follower_wakes_the_paused_deployment_once(pair: Pair) -> None:
    leader, follower = pair.leader, pair.follower
    deployment = await leader.create(name="sleepy", min_replicas=0, idle_timeout_s=60)
    leader.clock.advance(61)
    await leader.loop.reconcile(deployment)
    assert deployment.status is DeploymentStatus.paused
    await follower.sync.refresh()
    mirrored = follower.fleet.get(deployment.id)
    assert mirrored is not None and mirrored.status is DeploymentStatus.paused
    released = mirrored.ready_changed

    follower.sync.request_wake(mirrored)
    follower.sync.request_wake(mirrored)  # every held request asks; one signal goes
    await eventually(lambda: leader.store.get_deployment(deployment.id).wake_requested_at > 0)  # type: ignore[union-attr]
    await pair.leader_sync.refresh()
    decision = await leader.loop.reconcile(deployment)
    assert decision.desired == 1 and decision.rule == "wake"
    await eventually(lambda: ready_rows(leader, deployment.id) == 1)
    await leader.loop.reconcile(deployment)
    assert len(leader.events(deployment, "resumed")) == 1

    await follower.sync.refresh()
    assert released.is_set() and len(mirrored.ready_replicas()) == 1


async def test_a_stop_on_a_follower_stops_the_leaders_replicas_and_no_tick_undoes_it(pair: Pair) -> None:
    leader, follower = pair.leader, pair.follower
    deployment = await leader.create(name="chat", min_replicas=1)
    await leader.loop.reconcile(deployment)
    await eventually(lambda: ready_rows(leader, deployment.id) == 1)
    await follower.sync.refresh()
    mirrored = follower.fleet.get(deployment.id)
    assert mirrored is not None

    await follower.actions.stop(mirrored)
    assert follower.provider.stopped == []  # the replica is the leader's to stop
    # The leader's controller writes a status before it has heard: the user's stop stands.
    await leader.recorder.set_status(deployment, DeploymentStatus.provisioning)
    row = leader.store.get_deployment(deployment.id)
    assert row is not None and row.status == "stopped"

    await pair.leader_sync.refresh()
    assert deployment.status is DeploymentStatus.stopped and deployment.replicas == {}
    assert len(leader.provider.stopped) == 1
    await leader.loop.tick()
    assert leader.provider.started == leader.provider.stopped  # nothing restarted it


async def test_create_update_resume_and_delete_on_a_follower_reach_the_leader(pair: Pair) -> None:
    leader, follower = pair.leader, pair.follower
    await follower.sync.refresh()
    from inferstack.spec import DeploymentSpec

    made = await follower.actions.create(leader.tenant, DeploymentSpec(
        hf_model_id="org/m", engine="sim", hardware_profile="cpu", name="remote", min_replicas=1, max_replicas=3))
    await pair.leader_sync.refresh()
    deployment = leader.fleet.get(made.id)
    assert deployment is not None
    await leader.loop.reconcile(deployment)
    await eventually(lambda: deployment.ready_replicas())

    leader.clock.advance(1)
    await follower.actions.update(made, DeploymentUpdate(min_replicas=2))
    await pair.leader_sync.refresh()
    assert deployment.spec.min_replicas == 2
    assert (await leader.loop.reconcile(deployment)).desired == 2

    leader.clock.advance(1)
    await follower.actions.update(made, DeploymentUpdate(max_model_len=512))  # a new replica shape
    await pair.leader_sync.refresh()
    assert all(r.outdated for r in deployment.ready_replicas())

    await follower.actions.delete(made)
    await pair.leader_sync.refresh()
    assert leader.fleet.get(made.id) is None
    await eventually(lambda: set(leader.provider.stopped) == set(leader.provider.started))
    assert not leader.store.list_replicas(made.id, live_only=True) or all(
        r.status != ReplicaStatus.ready for r in leader.store.list_replicas(made.id, live_only=True))
    await asyncio.sleep(0)


async def test_the_leader_scales_on_the_traffic_of_every_instance(pair: Pair) -> None:
    leader, follower = pair.leader, pair.follower
    deployment = await leader.create(name="chat", min_replicas=1, max_replicas=4, target_rps=10)
    await follower.sync.refresh()
    mirrored = follower.fleet.get(deployment.id)
    assert mirrored is not None
    start = leader.clock.now()
    for i in range(8 * 60):  # 8 rps for a minute on each instance: 16 in all -> 2 replicas of 10 rps
        for live in (deployment, mirrored):
            live.metrics.arrival(start + i / 8)
            live.metrics.completion(start + i / 8 + 0.05, 0.05, 0.01, ok=True)
    leader.clock.advance(60)
    assert (await leader.loop.reconcile(deployment)).desired == 1  # alone, the leader sees 8 rps

    here, there = WindowExchange(leader.store, leader.fleet, leader.clock, "leader"), WindowExchange(
        leader.store, follower.fleet, leader.clock, "follower")
    await there.exchange(leading=False)
    await here.exchange(leading=True)
    decision = await leader.loop.reconcile(deployment)
    assert decision.desired == 2 and decision.inputs["rps"] == pytest.approx(16, rel=0.01)
    scaled = leader.events(deployment, "scaled")[-1]
    assert scaled.data["instances_reporting"] == 2

    leader.clock.advance(FRESH_S + 1)  # the follower stopped publishing: its window no longer counts
    await here.exchange(leading=True)
    assert deployment.peer_windows == []


async def test_a_follower_routes_an_adapter_to_the_leaders_replicas(pair: Pair) -> None:
    """A follower cannot see what the leader loaded: it routes an adapter of the spec to every ready replica
    (the leader loads it within a pass), and an adapter added on the follower reaches the leader's spec."""
    leader, follower = pair.leader, pair.follower
    from inferstack.lora import AdapterSpec

    deployment = await leader.create(name="chat", min_replicas=2, max_replicas=2,
                                     adapters=[{"name": "sql", "source": "org/sql"}])
    await leader.loop.reconcile(deployment)
    await eventually(lambda: ready_rows(leader, deployment.id) == 2)
    await follower.sync.refresh()
    found = follower.fleet.resolve_model(leader.tenant, "chat:sql")
    assert found is not None and found[1] == "sql" and len(found[0].ready_replicas("sql")) == 2
    assert follower.fleet.resolve_model(leader.tenant, "chat:law") is None

    leader.clock.advance(1)
    await follower.actions.add_adapter(found[0], AdapterSpec(name="law", source="org/law"))
    await pair.leader_sync.refresh()
    assert [a.name for a in deployment.spec.adapters] == ["sql", "law"]
    assert not any(r.outdated for r in deployment.ready_replicas())  # loaded at run time, not by new replicas
    await follower.sync.refresh()
    assert len(found[0].ready_replicas("law")) == 2


async def test_a_deployment_taken_in_by_a_refresh_before_its_creator_adds_it_gets_one_start(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's refresh can read a new row between the create's write and its add to the fleet (the
    row's notice arrives first). A pass on the deployment it took in starts the replica; the creator's
    add must not then put a second object in its place, whose pass would start min_replicas again."""
    leader = pair.leader
    record_event = leader.recorder.event
    passes = []

    async def refresh_and_pass_first(deployment, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not passes:
            await pair.leader_sync.refresh()
            absorbed = leader.fleet.get(deployment.id)
            assert absorbed is not None and absorbed is not deployment  # the race, as it happens
            passes.append(absorbed)
            await leader.loop.reconcile(absorbed)
        return await record_event(deployment, *args, **kwargs)

    monkeypatch.setattr(leader.recorder, "event", refresh_and_pass_first)
    created = await leader.create(name="chat", min_replicas=1, max_replicas=2)
    live = leader.fleet.get(created.id)
    assert live is not None
    await leader.loop.reconcile(live)
    await eventually(lambda: ready_rows(leader, created.id) >= 1)
    await leader.loop.reconcile(live)
    assert len(leader.provider.started) == 1 and len(leader.replica_rows(created)) == 1
    assert created is live is passes[0]  # the caller holds the object the controller drives


@pytest.mark.parametrize("side", ["leader", "follower"])
async def test_a_deployment_created_while_a_refresh_reads_the_rows_is_not_taken_for_deleted(
        pair: Pair, side: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh reads the rows, then this instance creates a deployment, then the refresh applies the
    rows, which do not hold it yet. It must not be marked deleted: a request held on it would be
    refused, and on the leader its replicas stopped."""
    sync, actions, fleet = ((pair.leader_sync, pair.leader.actions, pair.leader.fleet) if side == "leader"
                            else (pair.follower.sync, pair.follower.actions, pair.follower.fleet))
    loop, read_rows, created = asyncio.get_running_loop(), sync._load, []

    def read_then_create():  # type: ignore[no-untyped-def]
        rows = read_rows()
        spec = DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="cpu", name="chat")
        created.append(asyncio.run_coroutine_threadsafe(actions.create(pair.leader.tenant, spec), loop).result())
        return rows

    monkeypatch.setattr(sync, "_load", read_then_create)
    await sync.refresh()
    (deployment,) = created
    assert deployment.status is not DeploymentStatus.deleted
    assert fleet.resolve(pair.leader.tenant, "chat") is deployment


async def test_a_resume_made_while_a_refresh_reads_the_rows_is_not_undone_by_them(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh reads the rows (the deployment stopped), the user resumes it here, then the refresh applies
    the rows: their stale stop must not close it again (the resume was lost: provisioning in the store,
    stopped here, nothing started)."""
    leader, sync = pair.leader, pair.leader_sync
    deployment = await leader.create(name="chat", min_replicas=1)
    await leader.actions.stop(deployment)
    leader.clock.advance(1)
    loop, read_rows = asyncio.get_running_loop(), sync._load

    def read_then_resume():  # type: ignore[no-untyped-def]
        rows = read_rows()
        asyncio.run_coroutine_threadsafe(leader.actions.resume(deployment), loop).result()
        return rows

    monkeypatch.setattr(sync, "_load", read_then_resume)
    await sync.refresh()
    assert deployment.status is DeploymentStatus.provisioning
    await leader.loop.reconcile(deployment)
    assert len(deployment.replicas) == 1
