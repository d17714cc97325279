"""The leader's term as a fencing token: the lease row (`leader_lease`) and the session that commits a
leader's writes only while its term is current.

`controller/leadership.py` begins a term (raises `epoch`) each time an instance takes the lead; the
store's controller writes go through `fenced_session` with the term they belong to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from inferstack.db import Base, Database


class LeaderLeaseRow(Base):
    """One row: the current term of the control plane's leader (`controller/leadership.py`). `epoch`
    rises by one at every change of leader and fences the leader's writes (`fenced_session`)."""

    __tablename__ = "leader_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str] = mapped_column(String(80), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    renewed_at: Mapped[float] = mapped_column(Float, default=0.0)


class Fenced(Exception):
    """A write stamped with a term that is over: the instance that made it no longer leads."""


@contextmanager
def fenced_session(database: Database, fence: int | None) -> Iterator[Session]:
    """A session whose writes commit only while `fence` is the leader's current term (None: not fenced).

    The term is read after the writes, in the same transaction: on PostgreSQL with a share lock, so a
    new leader's `begin_term` (which updates the row) waits for this commit or, once it committed, is
    seen here; on SQLite the writes already hold the database's one write lock. Either way a deposed
    leader's late write rolls back with `Fenced` and changes nothing."""
    with database.session() as s:
        yield s
        if fence is not None:
            s.flush()
            current = s.scalar(select(LeaderLeaseRow.epoch).where(LeaderLeaseRow.id == 1)
                               .with_for_update(read=True))
            if current != fence:
                raise Fenced(f"refused a write of term {fence}: term {current} leads now")
