"""Reads and writes of file rows: synchronous SQLAlchemy on the database (async callers use
`asyncio.to_thread`). Every query a user can reach is scoped to their tenant."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from inferstack.db import Database, owned, page
from inferstack.files.tables import FileRow


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"


class FileInUse(Exception):
    """The file is still being read; the argument names the reader (a batch id)."""


def get_file(database: Database, tenant_id: str, file_id: str) -> FileRow | None:
    return owned(database, FileRow, tenant_id, file_id)


def list_files(database: Database, tenant_id: str, *, purpose: str | None, after: str | None, limit: int,
               newest_first: bool) -> tuple[list[FileRow], bool]:
    filters = [FileRow.purpose == purpose] if purpose else []
    return page(database, FileRow, tenant_id, after, limit, newest_first, *filters)


def delete_file(database: Database, tenant_id: str, file_id: str, *,
                reader: Callable[[Session, str], str | None]) -> FileRow | None:
    """Remove the file's row (the caller deletes its blob), unless `reader` (asked in the same
    transaction) names something still reading it: then raise FileInUse and keep it."""
    with database.session() as s:
        row = s.get(FileRow, file_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        user = reader(s, file_id)
        if user is not None:
            raise FileInUse(user)
        s.delete(row)
        return row
