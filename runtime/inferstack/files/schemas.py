"""The file objects clients see, exactly in OpenAI's shape so the official client parses them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from inferstack.files.tables import FileRow


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None  # files are kept until deleted
    status_details: str | None = None

    @classmethod
    def from_row(cls, row: FileRow) -> FileObject:
        return cls(id=row.id, bytes=row.bytes, created_at=int(row.created_at), filename=row.filename,
                   purpose=row.purpose)


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, rows: list[FileRow], has_more: bool) -> FileList:
        return cls(data=[FileObject.from_row(r) for r in rows], first_id=rows[0].id if rows else None,
                   last_id=rows[-1].id if rows else None, has_more=has_more)
