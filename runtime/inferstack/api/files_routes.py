"""OpenAI Files API: upload (streamed to the blob store), list, get, delete, download.

Served under /v1 and, as the platforms this replaces list them, without the prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import StreamingResponse

from inferstack.api.deps import services, tenant_id
from inferstack.batches.repository import active_batch_reading
from inferstack.db import UnknownCursor, add
from inferstack.errors import ApiError
from inferstack.files import repository as repo
from inferstack.files.blobs import BlobNotFound, aiter_chunks
from inferstack.files.schemas import FileDeleted, FileList, FileObject
from inferstack.files.tables import FileRow
from inferstack.files.upload import PURPOSES, UploadRejected, UploadTooLarge, receive_upload
from inferstack.gateway.body import paced

routes = APIRouter(tags=["files"])
Tenant = Annotated[str, Depends(tenant_id)]


def _not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", code="file_not_found", param="file_id")


# The form is parsed as it streams in (files/upload.py), so its schema is stated here.
@routes.post("/files", response_model=FileObject, openapi_extra={"requestBody": {
    "required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "purpose"],
        "properties": {"file": {"type": "string", "format": "binary"},
                       "purpose": {"type": "string", "enum": sorted(PURPOSES)}}}}}}})
async def upload_file(request: Request, tenant: Tenant) -> FileObject:
    """multipart/form-data with `file` (JSONL, at most 200 MB and 50,000 lines) and `purpose=batch`."""
    svc = services(request)
    file_id = repo.new_file_id()
    key = f"files/{file_id}"
    length = request.headers.get("content-length")
    try:
        chunks = paced(request.stream(), svc.settings.client_timeout_s)
        upload = await receive_upload(chunks, request.headers.get("content-type"),
                                      int(length) if length and length.isdigit() else None, svc.blobs, key)
    except UploadRejected as rejected:
        status = 413 if isinstance(rejected, UploadTooLarge) else 400
        raise ApiError(status, rejected.message, code=rejected.code, param=rejected.param) from None
    row = FileRow(id=file_id, tenant_id=tenant, filename=upload.filename, purpose=upload.purpose,
                  bytes=upload.bytes, lines=upload.lines, blob_key=key, created_at=svc.clock.now())
    try:
        await asyncio.to_thread(add, svc.store, row)
    except BaseException:
        await asyncio.to_thread(svc.blobs.delete, key)  # no blob without a row to find it by
        raise
    return FileObject.from_row(row)


@routes.get("/files", response_model=FileList)
async def list_files(request: Request, tenant: Tenant, purpose: str | None = None, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
                     order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc") -> FileList:
    svc = services(request)
    try:
        rows, has_more = await asyncio.to_thread(repo.list_files, svc.store, tenant, purpose=purpose, after=after,
                                                 limit=limit, newest_first=order == "desc")
    except UnknownCursor:
        raise ApiError(404, f"after: no file {after!r} to continue from.", param="after") from None
    return FileList.of(rows, has_more)


async def _file(request: Request, tenant: str, file_id: str) -> FileRow:
    row = await asyncio.to_thread(repo.get_file, services(request).store, tenant, file_id)
    if row is None:
        raise _not_found(file_id)
    return row


@routes.get("/files/{file_id}", response_model=FileObject)
async def get_file(request: Request, tenant: Tenant, file_id: str) -> FileObject:
    return FileObject.from_row(await _file(request, tenant, file_id))


@routes.delete("/files/{file_id}", response_model=FileDeleted)
async def delete_file(request: Request, tenant: Tenant, file_id: str) -> FileDeleted:
    svc = services(request)
    try:
        row = await asyncio.to_thread(repo.delete_file, svc.store, tenant, file_id, reader=active_batch_reading)
    except repo.FileInUse as in_use:
        raise ApiError(409, f"File {file_id} is the input of batch {in_use}, which is still running; "
                            "cancel the batch or wait for it to finish.", code="file_in_use") from None
    if row is None:
        raise _not_found(file_id)
    await asyncio.to_thread(svc.blobs.delete, row.blob_key)
    return FileDeleted(id=file_id)


@routes.get("/files/{file_id}/content")
async def file_content(request: Request, tenant: Tenant, file_id: str) -> StreamingResponse:
    """The file's bytes, streamed from the blob store."""
    row = await _file(request, tenant, file_id)
    chunks = aiter_chunks(services(request).blobs, row.blob_key)
    try:
        first = await anext(chunks, b"")  # a missing blob is a 404 here, not a broken stream later
    except BlobNotFound:
        raise _not_found(file_id) from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"content-length": str(row.bytes),
                                      "content-disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}"})


router = APIRouter()
router.include_router(routes, prefix="/v1")
router.include_router(routes, include_in_schema=False)


def include(app: FastAPI) -> None:
    app.include_router(router)
