"""Reads and writes of batches and batch results: synchronous SQLAlchemy on the database (async
callers use `asyncio.to_thread`). Every query a user can reach is scoped to their tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from inferstack.batches.tables import BatchResultRow, BatchRow
from inferstack.batches.transitions import BatchStatus, cancel, transition
from inferstack.db import Database, owned, page
from inferstack.files.tables import FileRow


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex[:24]}"


# --- batches: the API's side ----------------------------------------------------------------------
def get_batch(database: Database, tenant_id: str, batch_id: str) -> BatchRow | None:
    return owned(database, BatchRow, tenant_id, batch_id)


def list_batches(database: Database, tenant_id: str, *, after: str | None,
                 limit: int) -> tuple[list[BatchRow], bool]:
    return page(database, BatchRow, tenant_id, after, limit, True)


def active_batch_reading(session: Session, file_id: str) -> str | None:
    """A batch with work left whose input is the file, if any (such a file must not be deleted)."""
    return session.scalar(select(BatchRow.id).where(
        BatchRow.input_file_id == file_id, BatchRow.status.in_(list(BatchStatus.active()))).limit(1))


def request_cancel(database: Database, tenant_id: str, batch_id: str, now: float) -> BatchRow | None:
    """Move the batch to cancelling (the runner finishes the job); raises CannotCancel if too late."""
    while True:
        with database.session() as s:
            row = s.get(BatchRow, batch_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            changes = cancel(BatchStatus(row.status), now)
            if changes is None:
                return row
            # Conditional on the status read: the runner may move the batch on in between.
            moved = s.execute(update(BatchRow).where(BatchRow.id == batch_id, BatchRow.status == row.status)
                              .values(**changes))
            if moved.rowcount:
                s.expire(row)
                return s.get(BatchRow, batch_id)


# --- batches: the runner's side -------------------------------------------------------------------
def runnable_batch_ids(database: Database, owner: str, now: float) -> list[str]:
    """Batches with work left that nobody else holds a live lease on, oldest first."""
    with database.session() as s:
        return list(s.scalars(select(BatchRow.id).where(
            BatchRow.status.in_(list(BatchStatus.active())),
            or_(BatchRow.owner.is_(None), BatchRow.owner == owner, BatchRow.lease_until < now),
        ).order_by(BatchRow.created_at)))


def claim(database: Database, batch_id: str, owner: str, now: float, lease_s: float) -> BatchRow | None:
    """Take (or renew) the lease on a batch; None if another runner holds it or it has no work left."""
    with database.session() as s:
        claimed = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.status.in_(list(BatchStatus.active())),
            or_(BatchRow.owner.is_(None), BatchRow.owner == owner, BatchRow.lease_until < now),
        ).values(owner=owner, lease_until=now + lease_s))
        return s.get(BatchRow, batch_id) if claimed.rowcount else None


def advance(database: Database, batch_id: str, owner: str, current: BatchStatus, target: BatchStatus, now: float,
            **values: Any) -> bool:
    """Move an owned batch from `current` to `target`; False if its status moved meanwhile (a user
    cancelled) or the lease was lost, in which case nothing changed."""
    changes = transition(current, target, now) | values
    with database.session() as s:
        result = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.owner == owner, BatchRow.status == current.value,
        ).values(**changes))
        return bool(result.rowcount)


def save_results(database: Database, batch_id: str, owner: str, results: Sequence[tuple[int, bool, bytes]],
                 now: float, lease_s: float) -> BatchRow | None:
    """Checkpoint: store finished lines (line, ok, result line), bump the counts and renew the lease,
    in one transaction. Returns the batch as it now is (its status shows a cancel), or None if this
    runner lost the lease, in which case nothing was written."""
    ok = sum(1 for _, success, _ in results if success)
    with database.session() as s:
        renewed = s.execute(update(BatchRow).where(BatchRow.id == batch_id, BatchRow.owner == owner).values(
            completed=BatchRow.completed + ok, failed=BatchRow.failed + len(results) - ok,
            lease_until=now + lease_s))
        if not renewed.rowcount:
            return None
        if results:
            s.execute(insert(BatchResultRow), [
                {"batch_id": batch_id, "line_no": line, "ok": success, "line": data}
                for line, success, data in results])
        return s.get(BatchRow, batch_id)


def done_lines_after(database: Database, batch_id: str, after: int, limit: int) -> list[int]:
    """Up to `limit` line numbers above `after` that have a result, ascending (callers page through)."""
    with database.session() as s:
        return list(s.scalars(select(BatchResultRow.line_no).where(
            BatchResultRow.batch_id == batch_id, BatchResultRow.line_no > after,
        ).order_by(BatchResultRow.line_no).limit(limit)))


def results_after(database: Database, batch_id: str, after: int, limit: int) -> list[tuple[int, bool, bytes]]:
    """Up to `limit` results (line, ok, result line) above line `after`, ascending."""
    with database.session() as s:
        rows = s.execute(select(BatchResultRow.line_no, BatchResultRow.ok, BatchResultRow.line).where(
            BatchResultRow.batch_id == batch_id, BatchResultRow.line_no > after,
        ).order_by(BatchResultRow.line_no).limit(limit))
        return [(line, ok, data) for line, ok, data in rows]


def release_all(database: Database, owner: str) -> None:
    """Let go of every lease `owner` holds (a clean shutdown: another instance may take over now)."""
    with database.session() as s:
        s.execute(update(BatchRow).where(BatchRow.owner == owner).values(owner=None, lease_until=None))


def finish(database: Database, batch_id: str, owner: str, current: BatchStatus, target: BatchStatus, now: float,
           output_file: FileRow | None, error_file: FileRow | None, unfinished: int) -> bool:
    """The last transaction of a batch: its result files appear, the lines that never ran count as
    failed, the status becomes terminal and the lease is let go. False (and no change) if the status
    moved meanwhile or the lease was lost."""
    changes = transition(current, target, now)
    with database.session() as s:
        done = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.owner == owner, BatchRow.status == current.value,
        ).values(**changes, failed=BatchRow.failed + unfinished, owner=None, lease_until=None,
                 output_file_id=output_file.id if output_file else None,
                 error_file_id=error_file.id if error_file else None))
        if not done.rowcount:
            return False
        s.add_all([f for f in (output_file, error_file) if f is not None])
        return True
