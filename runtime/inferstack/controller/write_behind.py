"""The controller's store writes, kept until the database takes them: nothing is lost in an outage.

The live view changes whether or not the database answers (a replica dies, its replacement becomes
ready); the record must follow. Every write is queued here and the queue is written at once, in order.
When the database is away (`db.is_outage`) the queue keeps what it holds and tries again every
`retry_s` (each controller tick calls `flush`), so the database agrees with the live view again within
a tick or two of its return.

Writes to one row merge into one entry (a replica inserted, then made ready, then failed is one insert
with the last values), so the queue holds at most one entry per replica and deployment whatever the
outage's length. Events are kept up to `MAX_BUFFERED_EVENTS`; past that the oldest go, and once the
database is back one `events_lost` event per deployment says how many.

The controller's writes carry its term (`fence`, the leader's epoch) and commit only while it is
current (`fencing.fenced_session`): once another instance leads, this one's late writes are refused and dropped.
A user's writes (made on any instance) carry none, and never merge with a fenced one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferstack.clock import Clock
from inferstack.db import is_outage
from inferstack.fencing import Fenced
from inferstack.store import ReplicaRow, Store

log = logging.getLogger("inferstack.controller")

MAX_BUFFERED_EVENTS = 10_000
"""About 5 MB of events at most (messages are a line each): an hour-long outage of a busy fleet fits."""
RETRY_S = 1.0


@dataclass
class _Write:
    """One row's pending change: an insert (`insert`) or an update, with the values it ends with."""

    table: str  # "replica", "deployment", "deployment_status" (the controller's) or "event"
    row_id: str
    values: dict[str, Any]
    insert: bool = False
    fence: int | None = None
    """The leader's term this write belongs to (None: a user's write, on any instance)."""

    @property
    def key(self) -> tuple[str, str, int | None]:
        return self.table, self.row_id, self.fence

    def merged(self, newer: _Write) -> _Write:
        return _Write(self.table, self.row_id, {**self.values, **newer.values}, self.insert or newer.insert,
                      self.fence)

    def apply(self, store: Store) -> None:
        if self.table == "event":
            store.add_event(**self.values, fence=self.fence)
        elif self.table == "deployment":
            store.update_deployment(self.row_id, fence=self.fence, **self.values)
        elif self.table == "deployment_status":
            store.set_status_unless_closed(self.row_id, fence=self.fence, **self.values)
        elif self.insert:
            store.add_replica(ReplicaRow(id=self.row_id, **self.values), fence=self.fence)
        else:
            store.update_replica(self.row_id, fence=self.fence, **self.values)


@dataclass
class WriteBehind:
    store: Store
    clock: Clock
    retry_s: float = RETRY_S
    max_events: int = MAX_BUFFERED_EVENTS
    on_written: Callable[[], None] = lambda: None
    """Called after a flush wrote anything: other control-plane instances read these rows."""
    _queue: OrderedDict[tuple[str, str, int | None], _Write] = field(default_factory=OrderedDict)
    _events: int = 0
    _lost: dict[str, int] = field(default_factory=dict)
    _retry_at: float | None = None
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def database_away(self) -> bool:
        return self._retry_at is not None

    async def insert_replica(self, replica_id: str, values: dict[str, Any], fence: int | None = None) -> None:
        await self._put(_Write("replica", replica_id, values, insert=True, fence=fence))

    async def update_replica(self, replica_id: str, values: dict[str, Any], fence: int | None = None) -> None:
        await self._put(_Write("replica", replica_id, values, fence=fence))

    async def update_deployment(self, deployment_id: str, values: dict[str, Any], fence: int | None = None) -> None:
        await self._put(_Write("deployment", deployment_id, values, fence=fence))

    async def update_status_unless_closed(self, deployment_id: str, values: dict[str, Any],
                                          fence: int | None = None) -> None:
        """The controller's status change: never over a user's stop or delete made meanwhile elsewhere.
        Its own row key, so it never merges with (and never makes conditional) a user's write."""
        await self._put(_Write("deployment_status", deployment_id, values, fence=fence))

    async def add_event(self, deployment_id: str, at: float, kind: str, message: str, data: dict[str, Any],
                        fence: int | None = None) -> None:
        if self._events >= self.max_events:
            self._drop_oldest_event()
        self._events += 1
        await self._put(_Write("event", str(next(self._seq)), {
            "deployment_id": deployment_id, "at": at, "kind": kind, "message": message, "data": data}, fence=fence))

    async def flush(self) -> None:
        """Write what is queued, in order; stop at an outage and keep the rest (tried again after `retry_s`)."""
        if self._waiting():
            return
        async with self._lock:
            if self._waiting():  # the flush this one queued behind found the database away
                return
            wrote = False
            try:
                while self._queue or self._lost:
                    if not self._queue:
                        self._queue_lost_notices()
                    key, write = self._queue.popitem(last=False)
                    try:
                        await asyncio.to_thread(write.apply, self.store)
                    except Fenced as fenced:
                        log.warning("%s %s not written: %s", write.table, write.row_id, fenced)
                        self._written(write)
                        continue
                    except Exception as error:
                        if not is_outage(error):
                            # The database refused this one statement: retrying cannot help, the rest can go on.
                            log.exception("the database refused a write, dropped: %s %s", write.table, write.row_id)
                            self._written(write)
                            continue
                        self._put_back(key, write)
                        if self._retry_at is None:
                            log.warning("database unavailable (%s); %d writes kept until it answers",
                                        type(error).__name__, len(self._queue))
                        self._retry_at = self.clock.now() + self.retry_s
                        return
                    self._written(write)
                    wrote = True
                if self._retry_at is not None:
                    log.warning("database back; every kept write is written")
                    self._retry_at = None
            finally:
                if wrote:
                    self.on_written()

    def _waiting(self) -> bool:
        return self._retry_at is not None and self.clock.now() < self._retry_at

    async def _put(self, write: _Write) -> None:
        key = write.key
        earlier = self._queue.get(key)
        self._queue[key] = earlier.merged(write) if earlier else write
        await self.flush()

    def _put_back(self, key: tuple[str, str, int | None], write: _Write) -> None:
        """At the front again, merged under anything written to the same row meanwhile."""
        newer = self._queue.get(key)
        self._queue[key] = write.merged(newer) if newer else write
        self._queue.move_to_end(key, last=False)

    def _written(self, write: _Write) -> None:
        if write.table == "event":
            self._events -= 1

    def _drop_oldest_event(self) -> None:
        key = next((k for k in self._queue if k[0] == "event"), None)
        if key is None:  # the only kept event is being written right now
            return
        dropped = self._queue.pop(key)
        self._events -= 1
        deployment_id = dropped.values["deployment_id"]
        self._lost[deployment_id] = self._lost.get(deployment_id, 0) + 1

    def _queue_lost_notices(self) -> None:
        lost, self._lost = self._lost, {}
        for deployment_id, count in lost.items():
            self._events += 1
            self._queue[("event", str(next(self._seq)), None)] = _Write("event", "", {
                "deployment_id": deployment_id, "at": self.clock.now(), "kind": "events_lost",
                "message": f"{count} events of a database outage were dropped: more than {self.max_events} "
                           "were waiting", "data": {"lost": count}})
