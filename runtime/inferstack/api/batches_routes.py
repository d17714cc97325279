"""OpenAI Batch API: create, get, list (after/limit), cancel. The runner does the work.

Served under /v1 and, as the platforms this replaces list them, without the prefix.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import ValidationError

from inferstack.api.deps import services, tenant_id
from inferstack.batches import repository as repo
from inferstack.batches.schemas import BatchList, BatchObject, CreateBatch
from inferstack.batches.tables import BatchRow
from inferstack.batches.transitions import BatchStatus, CannotCancel
from inferstack.db import UnknownCursor, add
from inferstack.errors import ApiError
from inferstack.files.repository import get_file

routes = APIRouter(tags=["batches"])
Tenant = Annotated[str, Depends(tenant_id)]


def _not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")


async def _create_body(request: Request) -> CreateBatch:
    try:
        return CreateBatch.model_validate(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body must be a JSON object.") from None
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{param}: {message}" if param else message, code="invalid_request",
                       param=param) from None


# The body is read by `_create_body` (OpenAI answers 400, not FastAPI's 422), so its schema is stated here.
@routes.post("/batches", response_model=BatchObject, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": CreateBatch.model_json_schema()}}}})
async def create_batch(request: Request, tenant: Tenant) -> BatchObject:
    """Check the request and the input file now; the lines are validated by the runner (status
    `validating`), and problems found there fail the batch with per-line errors."""
    svc = services(request)
    body = await _create_body(request)
    source = await asyncio.to_thread(get_file, svc.store, tenant, body.input_file_id)
    if source is None:
        raise ApiError(404, f"No such File object: {body.input_file_id}", code="file_not_found",
                       param="input_file_id")
    if source.purpose != "batch":
        raise ApiError(400, f"File {source.id} has purpose {source.purpose!r}; a batch needs a file uploaded "
                            "with purpose 'batch'.", code="invalid_file", param="input_file_id")
    now = svc.clock.now()
    row = BatchRow(id=repo.new_batch_id(), tenant_id=tenant, endpoint=body.endpoint, input_file_id=source.id,
                   completion_window=body.completion_window, status=BatchStatus.validating.value,
                   user_metadata=body.metadata, created_at=now, expires_at=now + body.window_s,
                   total=0, completed=0, failed=0)
    await asyncio.to_thread(add, svc.store, row)
    svc.batches.kick()
    return BatchObject.from_row(row)


@routes.get("/batches", response_model=BatchList)
async def list_batches(request: Request, tenant: Tenant, after: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> BatchList:
    """Newest first; pass the last id of a page as `after` for the next one."""
    try:
        rows, has_more = await asyncio.to_thread(repo.list_batches, services(request).store, tenant,
                                                 after=after, limit=limit)
    except UnknownCursor:
        raise ApiError(404, f"after: no batch {after!r} to continue from.", param="after") from None
    return BatchList.of(rows, has_more)


@routes.get("/batches/{batch_id}", response_model=BatchObject)
async def get_batch(request: Request, tenant: Tenant, batch_id: str) -> BatchObject:
    row = await asyncio.to_thread(repo.get_batch, services(request).store, tenant, batch_id)
    if row is None:
        raise _not_found(batch_id)
    return BatchObject.from_row(row)


@routes.post("/batches/{batch_id}/cancel", response_model=BatchObject)
async def cancel_batch(request: Request, tenant: Tenant, batch_id: str) -> BatchObject:
    """-> cancelling at once; the runner stops sending, keeps the results so far, then -> cancelled."""
    svc = services(request)
    try:
        row = await asyncio.to_thread(repo.request_cancel, svc.store, tenant, batch_id, svc.clock.now())
    except CannotCancel as error:
        raise ApiError(409, str(error), code="batch_not_cancellable") from None
    if row is None:
        raise _not_found(batch_id)
    svc.batches.kick()
    return BatchObject.from_row(row)


router = APIRouter()
router.include_router(routes, prefix="/v1")
router.include_router(routes, include_in_schema=False)


def include(app: FastAPI) -> None:
    app.include_router(router)
