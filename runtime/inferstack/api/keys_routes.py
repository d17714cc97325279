"""API keys: list, create, revoke, rotate (`/v1/keys...`). Admin keys only; each manages its own tenant's.

A key is shown once, in the answer that creates it (create or rotate); the store keeps its hash. A key
revoked or rotated here is refused at once by this control plane (`KeyRing.forget`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from inferstack.access import KeyLimits, KeyScope
from inferstack.api.deps import admin_tenant_id, services
from inferstack.errors import ApiError
from inferstack.store import ApiKeyRow, KeyRevoked

router = APIRouter(tags=["keys"])
Admin = Annotated[str, Depends(admin_tenant_id)]
# Checked before any lookup: PostgreSQL refuses a NUL byte in a query, which would otherwise be a 500.
KeyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="The key's id (key-...).")]

TEN_YEARS_S = 10 * 365 * 86400


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: KeyScope = Field(KeyScope.inference, description="admin, or inference (calls models only): the default.")
    expires_in_s: float | None = Field(None, gt=0, le=TEN_YEARS_S, description="Lifetime; none: until revoked.")
    limits: KeyLimits = KeyLimits()


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_s: float | None = Field(None, gt=0, le=TEN_YEARS_S,
                                       description="The new key's lifetime; none: as long as the old key's was.")


class KeyView(BaseModel):
    object: str = "api_key"
    id: str
    prefix: str
    scope: KeyScope
    status: str  # active, expired or revoked
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    limits: KeyLimits


class KeyCreated(KeyView):
    key: str = Field(description="The key itself: shown this once, stored hashed.")
    replaces: str | None = None


def view(row: ApiKeyRow, now: float) -> KeyView:
    status = "revoked" if row.revoked_at is not None else "expired" if row.grant().expired(now) else "active"
    return KeyView(id=row.id, prefix=row.prefix, scope=KeyScope(row.scope), status=status, created_at=row.created_at,
                   expires_at=row.expires_at, revoked_at=row.revoked_at, limits=row.limits())


def _not_found(key_id: str) -> ApiError:
    return ApiError(404, f"No API key {key_id!r}.", code="key_not_found", param="key_id")


@router.get("/v1/keys")
async def list_keys(request: Request, tenant: Admin) -> dict[str, Any]:
    svc = services(request)
    rows = await asyncio.to_thread(svc.store.list_keys, tenant)
    now = svc.clock.now()
    return {"object": "list", "data": [view(row, now).model_dump() for row in rows]}


@router.post("/v1/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, request: Request, tenant: Admin) -> KeyCreated:
    svc = services(request)
    now = svc.clock.now()
    expires_at = now + body.expires_in_s if body.expires_in_s else None
    row, key = await asyncio.to_thread(svc.store.add_key, tenant, now, body.scope, expires_at, body.limits)
    return KeyCreated(**view(row, now).model_dump(), key=key)


@router.post("/v1/keys/{key_id}/revoke", response_model=KeyView)
async def revoke_key(key_id: KeyId, request: Request, tenant: Admin) -> KeyView:
    svc = services(request)
    now = svc.clock.now()
    row = await asyncio.to_thread(svc.store.revoke_key, tenant, key_id, now)
    if row is None:
        raise _not_found(key_id)
    svc.keys.forget(key_id)
    return view(row, now)


@router.post("/v1/keys/{key_id}/rotate", status_code=201, response_model=KeyCreated)
async def rotate_key(key_id: KeyId, request: Request, tenant: Admin, body: KeyRotate | None = None) -> KeyCreated:
    """A new key with the old one's scope and limits; the old key is revoked in the same step."""
    svc = services(request)
    now = svc.clock.now()
    old = next((row for row in await asyncio.to_thread(svc.store.list_keys, tenant) if row.id == key_id), None)
    if old is None:
        raise _not_found(key_id)
    lifetime = (body.expires_in_s if body else None) or (
        old.expires_at - old.created_at if old.expires_at is not None else None)
    try:
        rotated = await asyncio.to_thread(svc.store.rotate_key, tenant, key_id, now,
                                          now + lifetime if lifetime else None)
    except KeyRevoked as exc:
        raise ApiError(409, str(exc), code="key_revoked", param="key_id") from exc
    if rotated is None:
        raise _not_found(key_id)
    svc.keys.forget(key_id)
    row, key = rotated
    return KeyCreated(**view(row, now).model_dump(), key=key, replaces=key_id)
