"""Fencing: the controller's writes carry the leader's term, and a deposed leader's late writes change
nothing, on SQLite and on PostgreSQL. Two leaders in time: `first` leads, then `second` takes over while
`first` still runs (paused, or cut off from its lock but not from the database) and writes on."""

from __future__ import annotations

import pytest

from inferstack.clock import ManualClock
from inferstack.controller.leadership import begin_term
from inferstack.controller.recorder import Recorder, live_from_row
from inferstack.controller.window_exchange import MERGED, merged_windows, publish
from inferstack.fencing import Fenced
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus
from inferstack.store import ReplicaRow, Store


async def test_a_deposed_leaders_late_writes_are_refused_and_the_new_leaders_are_kept(store: Store) -> None:
    clock = ManualClock(100.0)
    tenant, _ = store.create_key("acme", clock.now())
    spec = DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="cpu")
    row = store.create_deployment(tenant, spec, clock.now())

    first_term = begin_term(store, "a:1", "h", clock.now())
    first = Recorder(store, clock, fence=lambda: first_term)
    seen_by_first = live_from_row(row, spec, clock.now())
    await first.add_replica(ReplicaRow(id="rep-a", deployment_id=row.id, status=ReplicaStatus.starting,
                                       created_at=clock.now()))
    assert [r.status for r in store.list_replicas(row.id)] == [ReplicaStatus.starting]  # its term: taken

    second_term = begin_term(store, "b:2", "h", clock.now())
    assert second_term == first_term + 1
    second = Recorder(store, clock, fence=lambda: second_term)
    [seen_by_second], [left] = await second.restore(clock.now())
    assert left.id == "rep-a"
    await second.orphaned(clock.now(), kept=set())  # the new leader finds the old leader's replica gone
    assert [r.status for r in store.list_replicas(row.id)] == [ReplicaStatus.stopped]

    # The old leader, late: a replica it thinks ready, a status, its memory, an event, a new replica.
    clock.advance(5)
    await first.replica("rep-a", ReplicaStatus.ready, ready_at=clock.now())
    await first.set_status(seen_by_first, DeploymentStatus.running)
    seen_by_first.replica_seconds = 999.0
    await first.save(seen_by_first)
    await first.event(seen_by_first, "scaled", "0 -> 1 replicas", {})
    await first.add_replica(ReplicaRow(id="rep-late", deployment_id=row.id, status=ReplicaStatus.starting,
                                       created_at=clock.now()))
    with pytest.raises(Fenced, match=f"term {first_term}.*term {second_term} leads"):
        await first.orphaned(clock.now(), kept=set())

    assert [(r.id, r.status) for r in store.list_replicas(row.id)] == [("rep-a", ReplicaStatus.stopped)]
    stored = store.get_deployment(row.id)
    assert stored is not None and stored.status == DeploymentStatus.created and stored.replica_seconds == 0
    assert [e.kind for e in store.list_events(row.id)] == []
    assert first.writes.pending == 0  # refused writes are dropped, not retried for ever

    # The leader's writes go through; so does a user's action recorded on any instance (not fenced).
    await second.set_status(seen_by_second, DeploymentStatus.running)
    await first.event(seen_by_first, "updated", "Spec updated: max_replicas", {}, by_user=True)
    stored = store.get_deployment(row.id)
    assert stored is not None and stored.status == DeploymentStatus.running
    assert [e.kind for e in store.list_events(row.id)] == ["status", "updated"]


def test_a_deposed_leaders_merged_windows_are_refused(store: Store) -> None:
    first_term = begin_term(store, "a:1", "h", 1.0)
    window = {"stats": {}, "instances_reporting": 1, "at": 1.0}
    publish(store, MERGED, 1.0, {"dep-1": window}, fence=first_term)
    second_term = begin_term(store, "b:2", "h", 2.0)
    with pytest.raises(Fenced):
        publish(store, MERGED, 3.0, {"dep-1": {**window, "at": 3.0}}, fence=first_term)
    assert merged_windows(store)["dep-1"].at == 1.0  # what the old leader published in its term stands
    publish(store, MERGED, 4.0, {"dep-1": {**window, "at": 4.0}}, fence=second_term)
    assert merged_windows(store)["dep-1"].at == 4.0
