"""Which control-plane instance leads: exactly one runs the controller; every one serves API and gateway.

- PostgreSQL: a session advisory lock, held on a dedicated connection for as long as the instance
  leads. The server releases it the moment that connection ends, so a leader killed with SIGKILL
  hands over within one election poll (`ELECTION_POLL_S`) of the next instance. Each new leader
  raises the lease row's `epoch`: the fencing token of its term (`Leadership.epoch`). Every write the
  controller makes carries it and commits only while it is current (`fencing.fenced_session`), so a deposed
  leader still writing (a paused process, a lock connection lost while its pool lives on) changes nothing.
- SQLite: an exclusive `flock` on a file beside the database, which the kernel drops when its holder
  dies. A SQLite file cannot be shared between hosts, so an instance on another host than the live
  leader's (the lease row names the host and is refreshed every poll) is refused at start.

The advisory lock's key and the lease row live in the store's schema: two control planes on two
schemas of one database never contend.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import psycopg
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from inferstack.db import is_outage
from inferstack.fencing import LeaderLeaseRow
from inferstack.store import Store

log = logging.getLogger("inferstack.leadership")

ELECTION_POLL_S = 0.5
"""How often a follower tries to take the lead and the leader checks it still holds it."""
SQLITE_HOST_STALE_S = 10.0
"""A SQLite leader whose lease row is older than this is gone: another host may take the file over."""


class AnotherHost(ValueError):
    """A SQLite store already led from another host."""


class Leadership(Protocol):
    epoch: int | None
    """The current term, the fence on the controller's writes; None for an instance alone by construction."""

    async def try_lead(self) -> bool:
        """Take the lead if no one holds it. True if this instance leads now."""
        ...

    async def still_leading(self) -> bool | None:
        """True: this instance still leads. False: another one does (or may): step down. None: the
        database does not answer, so no other instance can take the lead either: go on leading (the
        controller runs from its live view through an outage) and ask again at the next poll."""
        ...

    async def resign(self) -> None:
        """Give up the lead (at once: the next instance may take it on its next poll)."""
        ...


def instance_identity() -> tuple[str, str]:
    """(instance id, host name): what the lease row records of its holder."""
    host = socket.gethostname()
    return f"{host}:{os.getpid()}", host


def begin_term(store: Store, holder: str, host: str, now: float) -> int:
    """Record a new term and return its epoch. Called by the instance that just took the lock only."""
    with store.session() as s:
        lease = s.get(LeaderLeaseRow, 1, with_for_update=True)
        if lease is None:
            lease = LeaderLeaseRow(id=1, epoch=0)
            s.add(lease)
        lease.epoch += 1
        lease.holder, lease.host, lease.renewed_at = holder, host, now
        return lease.epoch


def renew(store: Store, epoch: int, now: float) -> bool:
    """Refresh the lease row; False if another term has begun since (this instance no longer leads)."""
    with store.session() as s:
        lease = s.get(LeaderLeaseRow, 1)
        if lease is None or lease.epoch != epoch:
            return False
        lease.renewed_at = now
        return True


def check_single_host(store: Store, host: str, now: float) -> None:
    """Refuse a second host on one SQLite file: its file lock would not see the other host's."""
    with store.session() as s:
        lease = s.scalar(select(LeaderLeaseRow).where(LeaderLeaseRow.id == 1))
    if lease is not None and lease.host and lease.host != host and now - lease.renewed_at < SQLITE_HOST_STALE_S:
        raise AnotherHost(
            f"the SQLite database {store.url} is in use by a control plane on host {lease.host!r} "
            f"(lease renewed {now - lease.renewed_at:.1f} s ago). Several hosts need a shared PostgreSQL "
            "database: set INFERSTACK_DATABASE_URL to a postgresql:// URL on every instance.")


def libpq_url(url: str) -> str:
    """SQLAlchemy's `postgresql+psycopg://` URL as libpq reads it."""
    return "postgresql://" + url.split("://", 1)[1]


class PostgresLeadership:
    def __init__(self, store: Store, holder: str, host: str, now: Callable[[], float]) -> None:
        self._store = store
        self._holder = holder
        self._host = host
        self._now = now
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._leading = False  # between a won election and a resignation: only then is a lost lock re-taken
        self.epoch = 0

    async def try_lead(self) -> bool:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(libpq_url(self._store.url), autocommit=True)
        cursor = await self._connection.execute(
            "select pg_try_advisory_lock(hashtext(current_schema() || ':inferstack-leader'))")
        row = await cursor.fetchone()
        if not (row and row[0]):
            return False
        self.epoch = await asyncio.to_thread(begin_term, self._store, self._holder, self._host, self._now())
        self._leading = True
        return True

    async def still_leading(self) -> bool | None:
        if not self._leading:
            return False
        try:
            if self._connection is None or self._connection.closed:
                # The lock went with the connection (an outage): take it again, unless another instance
                # took it first once the database came back.
                self._connection = await psycopg.AsyncConnection.connect(
                    libpq_url(self._store.url), autocommit=True, connect_timeout=5)
                cursor = await self._connection.execute(
                    "select pg_try_advisory_lock(hashtext(current_schema() || ':inferstack-leader'))")
                row = await cursor.fetchone()
                if not (row and row[0]):
                    return False
            else:
                await self._connection.execute("select 1")
            return await asyncio.to_thread(renew, self._store, self.epoch, self._now())
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("the leader's database connection is away (%s): leading on, asking again", exc)
            if self._connection is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await self._connection.close()
            self._connection = None
            return None
        except SQLAlchemyError as exc:
            if not is_outage(exc):
                raise
            return None

    async def resign(self) -> None:
        self._leading = False
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._connection.close()  # ends the session: the server releases the lock
        self._connection = None


class FileLeadership:
    def __init__(self, store: Store, lock_path: Path, holder: str, host: str, now: Callable[[], float]) -> None:
        self._store = store
        self._lock_path = lock_path
        self._holder = holder
        self._host = host
        self._now = now
        self._file: IO[bytes] | None = None
        self.epoch = 0

    async def try_lead(self) -> bool:
        await asyncio.to_thread(check_single_host, self._store, self._host, self._now())
        file = self._lock_path.open("ab")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        self._file = file
        self.epoch = await asyncio.to_thread(begin_term, self._store, self._holder, self._host, self._now())
        return True

    async def still_leading(self) -> bool:
        return self._file is not None and await asyncio.to_thread(renew, self._store, self.epoch, self._now())

    async def resign(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


class SoleLeadership:
    """An instance that is alone by construction (an in-process test, a tool): it always leads, unfenced."""

    epoch = None

    async def try_lead(self) -> bool:
        return True

    async def still_leading(self) -> bool:
        return True

    async def resign(self) -> None:
        pass
