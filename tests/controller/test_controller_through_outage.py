"""The controller through a database outage, in-process: PostgreSQL behind a TCP proxy the test cuts.

The live view goes on (a dead replica is replaced and the replacement is probed to ready); the record
waits and catches up when the database answers again, and events are kept in a bounded buffer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from controller_support import FakeProbe, Parts, build_parts, eventually
from sqlalchemy import text

from inferstack.controller.write_behind import RETRY_S, WriteBehind
from inferstack.spec import DeploymentStatus, ReplicaStatus
from support import postgres_schema
from tcp_proxy import TcpProxy, proxied

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy_url() -> Iterator[tuple[str, TcpProxy]]:
    with postgres_schema() as url, proxied(url) as (through_proxy, proxy):
        yield through_proxy, proxy


@pytest.fixture
async def parts(tmp_path: Path, proxy_url: tuple[str, TcpProxy]) -> AsyncIterator[Parts]:
    parts = await build_parts(tmp_path, "http://127.0.0.1:9", FakeProbe(all_healthy=True), database_url=proxy_url[0])
    yield parts
    await parts.close()


def database_answers(parts: Parts) -> bool:
    try:
        with parts.store.session() as s:
            s.execute(text("select 1"))
        return True
    except Exception:
        return False


async def test_a_replica_lost_during_an_outage_is_replaced_and_the_record_catches_up(
        parts: Parts, proxy_url: tuple[str, TcpProxy]) -> None:
    _, proxy = proxy_url
    deployment = await parts.create()
    await parts.loop.reconcile(deployment)
    first = await eventually(lambda: next((r for r in deployment.ready_replicas()), None))

    proxy.cut()
    assert not database_answers(parts)
    parts.provider.exit_codes[first.replica_id] = 137  # the replica dies while the database is away
    await parts.loop.tick()  # reaps it and starts a replacement
    second = await eventually(lambda: next((r for r in deployment.ready_replicas()), None))
    assert second.replica_id != first.replica_id  # probed to ready, though its row could not be written
    assert deployment.status is DeploymentStatus.running
    assert parts.recorder.writes.database_away and parts.recorder.writes.pending >= 3

    proxy.restore()
    parts.clock.advance(RETRY_S)
    await parts.loop.tick()
    assert not parts.recorder.writes.database_away and parts.recorder.writes.pending == 0
    rows = parts.replica_rows(deployment)
    assert (rows[first.replica_id].status, rows[first.replica_id].reason) == (ReplicaStatus.failed,
                                                                              "exited with code 137: loading "
                                                                              "weights | boom: no such model")
    assert rows[second.replica_id].status == ReplicaStatus.ready and rows[second.replica_id].ready_at is not None
    kinds = [(e.kind, e.data.get("replica_id")) for e in parts.store.list_events(deployment.id, 100)]
    assert ("replica_failed", first.replica_id) in kinds and ("replica_ready", second.replica_id) in kinds
    assert kinds.index(("replica_failed", first.replica_id)) < kinds.index(("replica_ready", second.replica_id))
    assert parts.store.get_deployment(deployment.id).status == DeploymentStatus.running


async def test_events_of_an_outage_are_kept_up_to_the_bound_and_the_loss_is_recorded(
        parts: Parts, proxy_url: tuple[str, TcpProxy]) -> None:
    _, proxy = proxy_url
    deployment = await parts.create()
    writes = WriteBehind(parts.store, parts.clock, max_events=5)
    proxy.cut()
    for n in range(8):
        await writes.add_event(deployment.id, float(n), "note", f"event {n}", {})
    assert writes.pending == 5

    proxy.restore()
    parts.clock.advance(RETRY_S)
    await writes.flush()
    events = [e for e in parts.store.list_events(deployment.id, 100) if e.kind in ("note", "events_lost")]
    assert [e.message for e in events] == [f"event {n}" for n in range(3, 8)] + [
        "3 events of a database outage were dropped: more than 5 were waiting"]
    assert [e.at for e in events[:5]] == [3.0, 4.0, 5.0, 6.0, 7.0]  # each keeps the time it happened


async def test_writes_to_one_row_merge_so_the_kept_queue_stays_small(
        parts: Parts, proxy_url: tuple[str, TcpProxy]) -> None:
    _, proxy = proxy_url
    deployment = await parts.create()
    proxy.cut()
    for n in range(50):  # status and saved state, tick after tick
        await parts.recorder.writes.update_deployment(deployment.id, {"desired_replicas": n})
    assert parts.recorder.writes.pending == 1
    proxy.restore()
    parts.clock.advance(RETRY_S)
    await parts.recorder.flush()
    assert parts.store.get_deployment(deployment.id).desired_replicas == 49
