"""What every route gets from the app: the services, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from inferstack.access import KeyGrant, KeyScope
from inferstack.auth import KeyRing
from inferstack.clock import Clock
from inferstack.errors import ApiError
from inferstack.fleet import Fleet
from inferstack.settings import Settings
from inferstack.store import Store

if TYPE_CHECKING:
    from inferstack.batches.runner import BatchRunner
    from inferstack.controller.actions import DeploymentActions
    from inferstack.controller.instance import Instance
    from inferstack.files.blobs import BlobStore
    from inferstack.gateway.entry import Gateway


@dataclass
class Services:
    settings: Settings
    store: Store
    clock: Clock
    keys: KeyRing
    fleet: Fleet
    controller: Instance
    """This instance's role: started and stopped with the app (leads, or follows)."""
    actions: DeploymentActions
    gateway: Gateway
    blobs: BlobStore
    batches: BatchRunner


def services(request: Request) -> Services:
    return request.app.state.services


async def caller(request: Request) -> KeyGrant:
    """What the caller's key grants, or a 401 in OpenAI's error shape."""
    header = request.headers.get("authorization")
    grant = await services(request).keys.grant(header)
    if grant is None:
        message = ("Missing API key: send 'Authorization: Bearer <key>'." if not header
                   else "Invalid, expired or revoked API key.")
        raise ApiError(401, message, code="invalid_api_key")
    return grant


async def tenant_id(request: Request) -> str:
    """The authenticated caller's tenant (any scope)."""
    return (await caller(request)).tenant_id


async def admin_tenant_id(request: Request) -> str:
    """The caller's tenant, if the key may manage it (deployments, keys); else a 403 in OpenAI's shape."""
    grant = await caller(request)
    if grant.scope is not KeyScope.admin:
        raise ApiError(403, f"This API key has scope '{grant.scope}': it may call models, files and batches, "
                            "but managing deployments and keys needs an admin key.", code="insufficient_scope")
    return grant.tenant_id
