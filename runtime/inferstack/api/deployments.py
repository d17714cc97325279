"""Native REST: `/v1/deployments...` and the OpenAI `/v1/models` list."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from inferstack.api.deps import Services, admin_tenant_id, services, tenant_id
from inferstack.controller.recorder import cost_usd
from inferstack.errors import ApiError
from inferstack.fleet import AdapterStats, LiveDeployment
from inferstack.lora import adapter_model
from inferstack.spec import DeploymentSpec, DeploymentStatus, DeploymentUpdate, describe_errors, error_fields
from inferstack.store import DuplicateName

router = APIRouter(tags=["deployments"])


class ReplicaView(BaseModel):
    id: str
    status: str
    url: str
    started_at: float
    ready_at: float | None
    stopped_at: float | None = None
    in_flight: int = 0
    engine_running: int | None = None
    engine_waiting: int | None = None
    reason: str = ""
    provider: str | None = None
    """Where it runs (`kubernetes`, `aws`, `local`); burst: placed past the first provider, which was full."""
    burst: bool = False


class CostView(BaseModel):
    price_per_replica_hour: float
    replica_seconds: float
    usd: float


class AdapterView(BaseModel):
    object: str = "adapter"
    name: str
    model: str
    """What callers send as `model`."""
    source: str
    rank: int | None
    loaded_replicas: int
    """Ready replicas that have it loaded: its requests go to these."""
    failures: list[str]
    """Why replicas refused to load it, if any did."""
    requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    mean_latency_s: float | None


def adapter_views(deployment: LiveDeployment) -> list[AdapterView]:
    ready = deployment.ready_replicas()
    views = []
    for adapter in deployment.spec.adapters:
        stats = deployment.adapter_stats.get(adapter.name, AdapterStats())
        views.append(AdapterView(
            name=adapter.name, model=adapter_model(deployment.name, adapter.name), source=adapter.source,
            rank=adapter.rank, loaded_replicas=sum(r.adapters.get(adapter.name) == adapter.source for r in ready),
            failures=sorted({r.adapter_failures[adapter.source] for r in ready
                             if adapter.source in r.adapter_failures}),
            requests=stats.requests, failed_requests=stats.failed, prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            mean_latency_s=round(stats.seconds / stats.requests, 6) if stats.requests else None))
    return views


class DeploymentView(BaseModel):
    object: str = "deployment"
    deployment_id: str
    id: str
    name: str
    status: str
    status_reason: str
    spec: dict[str, Any]
    replicas: list[ReplicaView]
    ready_replicas: int
    queued_requests: int
    created_at: float
    cost: CostView
    adapters: list[AdapterView]


def view(deployment: LiveDeployment) -> DeploymentView:
    spec = deployment.spec
    replicas = [
        ReplicaView(id=r.replica_id, status=r.status, url=r.url, started_at=r.started_at, ready_at=r.ready_at,
                    in_flight=r.outstanding + r.batch_outstanding, engine_running=r.engine_running,
                    engine_waiting=r.engine_waiting, provider=r.handle.provider, burst=r.burst)
        for r in deployment.replicas.values()
    ]
    return DeploymentView(
        deployment_id=deployment.id, id=deployment.id, name=deployment.name, status=deployment.status,
        status_reason=deployment.status_reason, spec=spec.public(), replicas=replicas,
        ready_replicas=len(deployment.ready_replicas()), queued_requests=deployment.queued,
        created_at=deployment.created_at,
        cost=CostView(price_per_replica_hour=spec.price_per_replica_hour,
                      replica_seconds=round(deployment.replica_seconds, 3),
                      usd=round(cost_usd(deployment), 6)),
        adapters=adapter_views(deployment),
    )


def find(svc: Services, tenant: str, ref: str) -> LiveDeployment:
    """A deployment of the caller's by id or name; anyone else's is indistinguishable from absent."""
    deployment = svc.fleet.resolve(tenant, ref)
    if deployment is None:
        raise ApiError(404, f"Deployment {ref!r} not found.", code="deployment_not_found")
    return deployment


def invalid(error: ValidationError) -> ApiError:
    fields = error_fields(error.errors())
    return ApiError(422, describe_errors(error.errors()), code="invalid_spec",
                    param=fields[0]["field"] if fields else None, details=fields)


async def create_deployment(svc: Services, tenant: str, spec: DeploymentSpec) -> LiveDeployment:
    try:
        return await svc.actions.create(tenant, spec)
    except DuplicateName as exc:
        raise ApiError(409, str(exc), code="duplicate_name", param="name") from exc


async def update_deployment(svc: Services, deployment: LiveDeployment, change: DeploymentUpdate) -> None:
    if deployment.status is DeploymentStatus.deleted:
        raise ApiError(404, f"Deployment {deployment.id} was deleted.")
    try:
        await svc.actions.update(deployment, change)
    except ValidationError as exc:
        raise invalid(exc) from exc


@router.post("/v1/deployments", status_code=201, response_model=DeploymentView)
async def create(spec: DeploymentSpec, request: Request, tenant: str = Depends(admin_tenant_id)) -> DeploymentView:
    return view(await create_deployment(services(request), tenant, spec))


@router.get("/v1/deployments")
async def list_deployments(request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    fleet = services(request).fleet
    mine = sorted((d for d in fleet.all() if d.tenant_id == tenant), key=lambda d: d.created_at)
    return {"object": "list", "data": [view(d).model_dump() for d in mine]}


@router.get("/v1/deployments/{ref}", response_model=DeploymentView)
async def get(ref: str, request: Request, tenant: str = Depends(tenant_id)) -> DeploymentView:
    return view(find(services(request), tenant, ref))


@router.patch("/v1/deployments/{ref}", response_model=DeploymentView)
async def patch(ref: str, change: DeploymentUpdate, request: Request,
                tenant: str = Depends(admin_tenant_id)) -> DeploymentView:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await update_deployment(svc, deployment, change)
    return view(deployment)


@router.delete("/v1/deployments/{ref}")
async def delete(ref: str, request: Request, tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await svc.actions.delete(deployment)
    return {"deployment_id": deployment.id, "object": "deployment", "deleted": True}


@router.post("/v1/deployments/{ref}/stop", response_model=DeploymentView)
async def stop(ref: str, request: Request, tenant: str = Depends(admin_tenant_id)) -> DeploymentView:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await svc.actions.stop(deployment)
    return view(deployment)


@router.post("/v1/deployments/{ref}/resume", response_model=DeploymentView)
async def resume(ref: str, request: Request, tenant: str = Depends(admin_tenant_id)) -> DeploymentView:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await svc.actions.resume(deployment)
    return view(deployment)


@router.get("/v1/deployments/{ref}/replicas")
async def replicas(ref: str, request: Request, all: bool = False,
                   tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    """Live replicas; with `all=true` also the stopped and failed ones, with why they ended."""
    svc = services(request)
    deployment = find(svc, tenant, ref)
    rows = await asyncio.to_thread(svc.store.list_replicas, deployment.id, not all)
    live = {r.id: r for r in view(deployment).replicas}
    data = [
        live[r.id].model_copy(update={"reason": r.reason}).model_dump() if r.id in live else ReplicaView(
            id=r.id, status=r.status, url=r.url, started_at=r.created_at, ready_at=r.ready_at,
            stopped_at=r.stopped_at, reason=r.reason).model_dump()
        for r in rows
    ]
    return {"object": "list", "data": data}


@router.get("/v1/deployments/{ref}/events")
async def events(ref: str, request: Request, limit: int = 100,
                 tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    rows = await asyncio.to_thread(svc.store.list_events, deployment.id, min(max(limit, 1), 1000))
    return {"object": "list", "data": [
        {"at": e.at, "kind": e.kind, "message": e.message, "data": e.data} for e in rows]}


@router.get("/v1/models")
async def models(request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    """OpenAI's model list: the caller's deployments, by id (the name works as `model` too), each followed
    by its LoRA adapters, with the deployment as `parent` as vLLM lists them."""
    fleet = services(request).fleet
    data = []
    for d in fleet.all():
        if d.tenant_id != tenant:
            continue
        data.append({"id": d.id, "object": "model", "created": int(d.created_at), "owned_by": d.tenant_id,
                     "name": d.name, "root": d.spec.hf_model_id, "parent": None, "status": d.status.value,
                     "task": d.spec.task.value})
        data += [{"id": adapter_model(d.name, a.name), "object": "model", "created": int(d.created_at),
                  "owned_by": d.tenant_id, "name": a.name, "root": a.source, "parent": d.id,
                  "status": d.status.value, "task": d.spec.task.value} for a in d.spec.adapters]
    return {"object": "list", "data": data}
