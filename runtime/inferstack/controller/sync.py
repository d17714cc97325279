"""One fleet view on every control-plane instance, kept from the store.

The leader's fleet is the truth about replicas (it starts, probes and stops them); every instance
writes the deployments its users change. `FleetSync.refresh` reads the rows and:
- on a follower, mirrors them (`mirror`): deployments with their spec and status, and the live
  replicas with their URL and key, so its gateway resolves and serves every deployment. A replica
  that became ready releases the requests held here at once.
- on the leader, takes in what other instances changed (`FleetSync.absorb`): a new deployment, a
  spec update (reshaping replicas if needed), a stop, resume or delete, a wake-up asked for a request
  held elsewhere.

When a refresh happens: on PostgreSQL, every write an instance makes is followed by a `NOTIFY` on the
schema's channel, and every instance `LISTEN`s (`PostgresFeed`), with a full resync every
`PG_RESYNC_S` as the safety net. On SQLite (one host) there is no push: every instance resyncs every
`SQLITE_RESYNC_S`, which bounds how stale a follower is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from inferstack.clock import Clock, wait_at_most
from inferstack.controller.adapters import needs_new_replicas_for
from inferstack.controller.leadership import libpq_url
from inferstack.controller.recorder import live_from_row
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.fleet import Fleet, LiveDeployment, LiveReplica
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus
from inferstack.store import DeploymentRow, ReplicaRow, Store

log = logging.getLogger("inferstack.sync")

PG_RESYNC_S = 2.0
SQLITE_RESYNC_S = 0.2
WAKE_SIGNAL_EVERY_S = 1.0
"""A follower asks for a deployment's wake-up at most this often (every held request asks)."""
_CLOSED_BY_USER = (DeploymentStatus.stopped, DeploymentStatus.deleted)
_RESUMABLE = (DeploymentStatus.stopped, DeploymentStatus.failed)


class ChangeFeed(Protocol):
    resync_s: float
    """How often a full resync runs besides the pushed notices."""

    async def open(self, on_change: Callable[[], None]) -> None: ...

    def announce(self) -> None:
        """Tell every instance the store changed (coalesced; never blocks)."""
        ...

    async def close(self) -> None: ...


class PollingFeed:
    """SQLite on one host: nothing to push through; instances resync on a short interval instead."""

    resync_s = SQLITE_RESYNC_S

    async def open(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    def announce(self) -> None:
        pass

    async def close(self) -> None:
        pass


class PostgresFeed:
    """`LISTEN`/`NOTIFY` on a channel named after the store's schema."""

    resync_s = PG_RESYNC_S

    def __init__(self, url: str) -> None:
        self._url = libpq_url(url)
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel = ""

    async def open(self, on_change: Callable[[], None]) -> None:
        listener = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        sender = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        cursor = await listener.execute("select current_schema()")
        schema = (await cursor.fetchone() or ("public",))[0]
        self._channel = "inferstack_" + hashlib.sha256(str(schema).encode()).hexdigest()[:16]
        await listener.execute(f"LISTEN {self._channel}")
        self._tasks = [asyncio.create_task(self._listen(listener, on_change), name="fleet-listen"),
                       asyncio.create_task(self._send(sender), name="fleet-notify")]

    def announce(self) -> None:
        self._pending.set()

    async def _listen(self, connection: psycopg.AsyncConnection[Any], on_change: Callable[[], None]) -> None:
        async with connection:
            async for _ in connection.notifies():
                on_change()

    async def _send(self, connection: psycopg.AsyncConnection[Any]) -> None:
        async with connection:
            while True:
                await self._pending.wait()
                self._pending.clear()  # writes made while this NOTIFY goes out get one more
                try:
                    await connection.execute("select pg_notify(%s, '')", (self._channel,))
                except psycopg.Error:
                    log.exception("could not notify the other instances; they resync within %g s", PG_RESYNC_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class FleetSync:
    def __init__(self, store: Store, fleet: Fleet, feed: ChangeFeed, replicas: ReplicaLifecycle, clock: Clock,
                 nudge: Callable[[], None], *, resync_s: float) -> None:
        """`nudge` asks the controller loop for a pass (when this instance leads)."""
        self._store = store
        self._fleet = fleet
        self._feed = feed
        self._replicas = replicas
        self._clock = clock
        self._nudge = nudge
        self._resync_s = resync_s
        self._leading: Callable[[], bool] = lambda: False
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wake_signalled: dict[str, float] = {}
        self._spawned: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()
        """Held by a refresh, and by whoever changes this instance's role (see `controller/instance.py`)."""

    async def start(self, leading: Callable[[], bool]) -> None:
        self._leading = leading
        await self._feed.open(self._dirty.set)
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="fleet-sync")

    async def stop(self) -> None:
        for task in [self._task, *self._spawned]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._feed.close()

    def announce(self) -> None:
        self._feed.announce()

    def request_wake(self, deployment: LiveDeployment) -> None:
        """A request held here wants a replica and this instance does not lead: ask the leader, now."""
        now = self._clock.now()
        if now - self._wake_signalled.get(deployment.id, float("-inf")) < WAKE_SIGNAL_EVERY_S:
            return
        self._wake_signalled[deployment.id] = now
        task = asyncio.create_task(self._signal_wake(deployment.id, now))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _signal_wake(self, deployment_id: str, now: float) -> None:
        await asyncio.to_thread(self._store.request_wake, deployment_id, now)
        self._feed.announce()

    async def _run(self) -> None:
        while True:
            await wait_at_most(self._dirty, self._resync_s)
            self._dirty.clear()
            try:
                await self.refresh()
            except Exception:  # the next notice or resync retries
                log.exception("fleet refresh failed")

    async def refresh(self) -> None:
        # Only deployments live before the rows are read can be missing from them because they were
        # deleted: one created here meanwhile is simply newer than the rows.
        known = {d.id for d in self._fleet.all()}
        rows, replicas = await asyncio.to_thread(self._load)
        async with self.lock:
            now = self._clock.now()
            if self._leading():
                await self.absorb(rows, now, known)
            else:
                mirror(self._fleet, rows, replicas, self._spec, known)

    def _spec(self, row: DeploymentRow) -> DeploymentSpec:
        # A token sealed under another key leaves the spec without one (its deployment is failed at restore).
        return self._store.restorable_spec(row)[0]

    def _load(self) -> tuple[list[DeploymentRow], list[ReplicaRow]]:
        return self._store.list_deployments(), self._store.live_replicas()

    async def absorb(self, rows: list[DeploymentRow], now: float, known: set[str]) -> None:
        """The leader takes in what other instances wrote. Its own writes are no news: it set the live
        deployment first and stamped `row_updated_at`, so only a newer row changes anything. `known`: the
        deployments live before `rows` were read (only those can have been deleted elsewhere)."""
        changed = False
        for row in rows:
            live = self._fleet.get(row.id)
            if live is None:
                self._fleet.add(live_from_row(row, self._spec(row), now))
                changed = True
                continue
            changed |= await self._absorb_row(live, row, now)
        present = {row.id for row in rows}
        for live in self._fleet.all():
            if live.id in known and live.id not in present:  # deleted on another instance
                live.status = DeploymentStatus.deleted
                self._fleet.remove(live.id)
                await self._replicas.remove(live)
                changed = True
        if changed:
            self._nudge()

    async def _absorb_row(self, live: LiveDeployment, row: DeploymentRow, now: float) -> bool:
        changed = False
        status = DeploymentStatus(row.status)
        # A stop read before a later user change here (a resume) is stale; a delete is final.
        if status in _CLOSED_BY_USER and live.status is not status and (
                status is DeploymentStatus.deleted or row.updated_at >= live.row_updated_at):
            live.status, live.status_reason = status, row.status_reason
            if status is DeploymentStatus.deleted:
                await self._replicas.remove(live)
            else:
                await self._replicas.stop_all(live)
            changed = True
        elif row.updated_at > live.row_updated_at:
            spec = self._spec(row)
            reshaped = needs_new_replicas_for(live, live.spec, spec)
            live.spec = spec
            if reshaped:
                self._replicas.reshape(live)
            if status is DeploymentStatus.provisioning and live.status in _RESUMABLE:
                live.fresh_start(now)
                live.status = status
            changed = True
        live.row_updated_at = max(live.row_updated_at, row.updated_at)
        if live.ready_replicas():
            live.held_elsewhere_until = 0.0
        if row.wake_requested_at > live.wake_seen_at:
            live.wake_seen_at = row.wake_requested_at
            if not live.ready_replicas():
                live.held_elsewhere_until = now + live.spec.max_queue_wait_s
            changed = True
        return changed


def mirror(fleet: Fleet, rows: list[DeploymentRow], replica_rows: list[ReplicaRow],
           spec_of: Callable[[DeploymentRow], DeploymentSpec], known: set[str]) -> None:
    """A follower's fleet made to match the store, keeping each live object (held requests wait on it,
    and in-flight requests count on its replicas). `known`: the deployments live before `rows` were read."""
    replicas_of: dict[str, list[ReplicaRow]] = defaultdict(list)
    for replica in replica_rows:
        replicas_of[replica.deployment_id].append(replica)
    present = set()
    for row in rows:
        present.add(row.id)
        live = fleet.get(row.id)
        if live is None:
            live = live_from_row(row, spec_of(row), row.last_activity_at)
            fleet.add(live)
        elif row.updated_at > live.row_updated_at:
            live.spec = spec_of(row)
            live.row_updated_at = row.updated_at
        status = DeploymentStatus(row.status)
        closed = status is not live.status and status not in DeploymentStatus.managed()
        live.status, live.status_reason = status, row.status_reason
        live.replica_seconds = row.replica_seconds
        if _mirror_replicas(live, replicas_of[row.id]) or closed:
            live.notify()
    for live in fleet.all():
        if live.id in known and live.id not in present:
            live.status = DeploymentStatus.deleted
            fleet.remove(live.id)
            live.notify()


def _mirror_replicas(live: LiveDeployment, rows: list[ReplicaRow]) -> bool:
    """Returns whether a replica became ready (held requests may go)."""
    became_ready = False
    for row in rows:
        status = ReplicaStatus(row.status)
        replica = live.replicas.get(row.id)
        if replica is None:
            replica = LiveReplica(handle=ReplicaHandle(row.id, row.url, row.pid, row.log_path), api_key=row.api_key,
                                  status=status, started_at=row.created_at, ready_at=row.ready_at)
            live.replicas[row.id] = replica
            became_ready |= status is ReplicaStatus.ready
        elif replica.status is not status:
            became_ready |= status is ReplicaStatus.ready
            replica.status, replica.ready_at = status, row.ready_at
        # A follower cannot see what the leader loaded where: it takes the spec's adapters as loaded (the
        # leader loads them within a pass; an engine that refused one answers with vLLM's own 404).
        replica.adapters = {a.name: a.source for a in live.spec.adapters}
    current = {row.id for row in rows}
    for replica_id in [r for r in live.replicas if r not in current]:
        live.replicas.pop(replica_id).status = ReplicaStatus.stopped
    return became_ready
