"""The table of uploaded and produced files: the metadata; the bytes are in the blob store."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferstack.db import Base, TenantOwned


class FileRow(TenantOwned, Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_created", "tenant_id", "created_at"),)
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(20))
    bytes: Mapped[int] = mapped_column(Integer)
    lines: Mapped[int] = mapped_column(Integer, default=0)  # non-blank lines, checked at upload
    blob_key: Mapped[str] = mapped_column(Text)
