"""Native REST for a deployment's LoRA adapters: `GET|POST /v1/deployments/{id}/adapters` and
`DELETE /v1/deployments/{id}/adapters/{name}`. Adding or removing one loads or unloads it on the ready
replicas at once (`controller/actions.py`); callers then use `<deployment-name>:<adapter>` as `model`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from inferstack.api.deployments import AdapterView, adapter_views, find, invalid
from inferstack.api.deps import admin_tenant_id, services, tenant_id
from inferstack.lora import AdapterSpec, adapter_model

router = APIRouter(tags=["adapters"])


@router.get("/v1/deployments/{ref}/adapters")
async def list_adapters(ref: str, request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    deployment = find(services(request), tenant, ref)
    return {"object": "list", "data": [v.model_dump() for v in adapter_views(deployment)]}


@router.post("/v1/deployments/{ref}/adapters", status_code=201, response_model=AdapterView)
async def add_adapter(ref: str, adapter: AdapterSpec, request: Request,
                      tenant: str = Depends(admin_tenant_id)) -> AdapterView:
    """Add an adapter and load it on every ready replica; 422 (and nothing changed) if an engine refuses it."""
    svc = services(request)
    deployment = find(svc, tenant, ref)
    try:
        await svc.actions.add_adapter(deployment, adapter)
    except ValidationError as exc:  # e.g. more adapters than max_loras
        raise invalid(exc) from exc
    return next(v for v in adapter_views(deployment) if v.name == adapter.name)


@router.delete("/v1/deployments/{ref}/adapters/{name}")
async def remove_adapter(ref: str, name: str, request: Request,
                         tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await svc.actions.remove_adapter(deployment, name)
    return {"object": "adapter", "name": name, "model": adapter_model(deployment.name, name), "deleted": True}
