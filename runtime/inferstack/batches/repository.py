"""Reads and writes of files, batches and batch results: synchronous SQLAlchemy on `Store`
(async callers use `asyncio.to_thread`). Every query a user can reach is scoped to their tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from inferstack.batches.tables import BatchResultRow, BatchRow, FileRow
from inferstack.batches.transitions import BatchStatus, cancel, transition
from inferstack.store import Store

Row = TypeVar("Row", FileRow, BatchRow)


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex[:24]}"


class UnknownCursor(Exception):
    pass


class FileInUse(Exception):
    pass


def _page(session: Session, model: type[Row], tenant_id: str, after: str | None, limit: int,
          newest_first: bool, *filters: Any) -> tuple[list[Row], bool]:
    """One page of a tenant's rows ordered by (created_at, id), starting after the row `after`."""
    query = select(model).where(model.tenant_id == tenant_id, *filters)
    if after:
        cursor = session.get(model, after)
        if cursor is None or cursor.tenant_id != tenant_id:
            raise UnknownCursor(after)
        if newest_first:
            query = query.where(or_(model.created_at < cursor.created_at,
                                    and_(model.created_at == cursor.created_at, model.id < cursor.id)))
        else:
            query = query.where(or_(model.created_at > cursor.created_at,
                                    and_(model.created_at == cursor.created_at, model.id > cursor.id)))
    order = (model.created_at.desc(), model.id.desc()) if newest_first else (model.created_at, model.id)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


# --- files ----------------------------------------------------------------------------------------
def add(store: Store, row: Row) -> Row:
    """Store a new file or batch row."""
    with store.session() as s:
        s.add(row)
    return row


def _owned(store: Store, model: type[Row], tenant_id: str, row_id: str) -> Row | None:
    """The row if it exists and is the tenant's: another tenant's is indistinguishable from absent."""
    with store.session() as s:
        row = s.get(model, row_id)
        return row if row is not None and row.tenant_id == tenant_id else None


def get_file(store: Store, tenant_id: str, file_id: str) -> FileRow | None:
    return _owned(store, FileRow, tenant_id, file_id)


def list_files(store: Store, tenant_id: str, *, purpose: str | None, after: str | None, limit: int,
               newest_first: bool) -> tuple[list[FileRow], bool]:
    filters = [FileRow.purpose == purpose] if purpose else []
    with store.session() as s:
        return _page(s, FileRow, tenant_id, after, limit, newest_first, *filters)


def delete_file(store: Store, tenant_id: str, file_id: str) -> FileRow | None:
    """Remove the file's row (the caller deletes its blob). A batch still reading it keeps it."""
    with store.session() as s:
        row = s.get(FileRow, file_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        user = s.scalar(select(BatchRow.id).where(
            BatchRow.input_file_id == file_id, BatchRow.status.in_(list(BatchStatus.active()))).limit(1))
        if user is not None:
            raise FileInUse(user)
        s.delete(row)
        return row


# --- batches: the API's side ----------------------------------------------------------------------
def get_batch(store: Store, tenant_id: str, batch_id: str) -> BatchRow | None:
    return _owned(store, BatchRow, tenant_id, batch_id)


def list_batches(store: Store, tenant_id: str, *, after: str | None,
                 limit: int) -> tuple[list[BatchRow], bool]:
    with store.session() as s:
        return _page(s, BatchRow, tenant_id, after, limit, True)


def request_cancel(store: Store, tenant_id: str, batch_id: str, now: float) -> BatchRow | None:
    """Move the batch to cancelling (the runner finishes the job); raises CannotCancel if too late."""
    while True:
        with store.session() as s:
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
def runnable_batch_ids(store: Store, owner: str, now: float) -> list[str]:
    """Batches with work left that nobody else holds a live lease on, oldest first."""
    with store.session() as s:
        return list(s.scalars(select(BatchRow.id).where(
            BatchRow.status.in_(list(BatchStatus.active())),
            or_(BatchRow.owner.is_(None), BatchRow.owner == owner, BatchRow.lease_until < now),
        ).order_by(BatchRow.created_at)))


def claim(store: Store, batch_id: str, owner: str, now: float, lease_s: float) -> BatchRow | None:
    """Take (or renew) the lease on a batch; None if another runner holds it or it has no work left."""
    with store.session() as s:
        claimed = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.status.in_(list(BatchStatus.active())),
            or_(BatchRow.owner.is_(None), BatchRow.owner == owner, BatchRow.lease_until < now),
        ).values(owner=owner, lease_until=now + lease_s))
        return s.get(BatchRow, batch_id) if claimed.rowcount else None


def advance(store: Store, batch_id: str, owner: str, current: BatchStatus, target: BatchStatus, now: float,
            **values: Any) -> bool:
    """Move an owned batch from `current` to `target`; False if its status moved meanwhile (a user
    cancelled) or the lease was lost, in which case nothing changed."""
    changes = transition(current, target, now) | values
    with store.session() as s:
        result = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.owner == owner, BatchRow.status == current.value,
        ).values(**changes))
        return bool(result.rowcount)


def save_results(store: Store, batch_id: str, owner: str, results: Sequence[tuple[int, bool, bytes]],
                 now: float, lease_s: float) -> BatchRow | None:
    """Checkpoint: store finished lines (line, ok, result line), bump the counts and renew the lease,
    in one transaction. Returns the batch as it now is (its status shows a cancel), or None if this
    runner lost the lease, in which case nothing was written."""
    ok = sum(1 for _, success, _ in results if success)
    with store.session() as s:
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


def done_lines_after(store: Store, batch_id: str, after: int, limit: int) -> list[int]:
    """Up to `limit` line numbers above `after` that have a result, ascending (callers page through)."""
    with store.session() as s:
        return list(s.scalars(select(BatchResultRow.line_no).where(
            BatchResultRow.batch_id == batch_id, BatchResultRow.line_no > after,
        ).order_by(BatchResultRow.line_no).limit(limit)))


def results_after(store: Store, batch_id: str, after: int, limit: int) -> list[tuple[int, bool, bytes]]:
    """Up to `limit` results (line, ok, result line) above line `after`, ascending."""
    with store.session() as s:
        rows = s.execute(select(BatchResultRow.line_no, BatchResultRow.ok, BatchResultRow.line).where(
            BatchResultRow.batch_id == batch_id, BatchResultRow.line_no > after,
        ).order_by(BatchResultRow.line_no).limit(limit))
        return [(line, ok, data) for line, ok, data in rows]


def release_all(store: Store, owner: str) -> None:
    """Let go of every lease `owner` holds (a clean shutdown: another instance may take over now)."""
    with store.session() as s:
        s.execute(update(BatchRow).where(BatchRow.owner == owner).values(owner=None, lease_until=None))


def finish(store: Store, batch_id: str, owner: str, current: BatchStatus, target: BatchStatus, now: float,
           output_file: FileRow | None, error_file: FileRow | None, unfinished: int) -> bool:
    """The last transaction of a batch: its result files appear, the lines that never ran count as
    failed, the status becomes terminal and the lease is let go. False (and no change) if the status
    moved meanwhile or the lease was lost."""
    changes = transition(current, target, now)
    with store.session() as s:
        done = s.execute(update(BatchRow).where(
            BatchRow.id == batch_id, BatchRow.owner == owner, BatchRow.status == current.value,
        ).values(**changes, failed=BatchRow.failed + unfinished, owner=None, lease_until=None,
                 output_file_id=output_file.id if output_file else None,
                 error_file_id=error_file.id if error_file else None))
        if not done.rowcount:
            return False
        s.add_all([f for f in (output_file, error_file) if f is not None])
        return True
