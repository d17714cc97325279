"""Native REST: `/v1/deployments...` and the OpenAI `/v1/models` list."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError

from inferstack.api.deps import Services, admin_tenant_id, services, tenant_id
from inferstack.autoscaler.shared_window import MergedWindow
from inferstack.controller.recorder import cost_usd, usd_per_hour
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment
from inferstack.hardware import PROFILES, fit_problem
from inferstack.lora import adapter_model
from inferstack.model_hub import lookup_size, needs_lookup
from inferstack.providers.logs import MAX_TAIL, CloudWatchLogs, LogUnavailable, read_log
from inferstack.providers.placement import PlacementError, placement_order
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
    usd_per_hour: float
    """What the live replicas cost per hour now."""


class MetricsView(BaseModel):
    """What the autoscaler last saw: every control-plane instance's traffic added up by the leader, the
    same on every instance. Latency percentiles are bucketed (at most 25% above the exact value) when
    more than one instance reports."""

    instances_reporting: int
    at: float
    """When the leader observed it."""
    arrivals_per_s: float
    completions_per_s: float
    in_flight: int
    completed: int
    failed: int
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p50_ttft_ms: float | None
    p95_ttft_ms: float | None


def metrics_view(merged: MergedWindow | None) -> MetricsView | None:
    if merged is None:
        return None
    stats = merged.stats
    return MetricsView(instances_reporting=merged.instances_reporting, at=merged.at, arrivals_per_s=stats.rps,
                       completions_per_s=stats.completion_rps, in_flight=stats.in_flight, completed=stats.completed,
                       failed=stats.failed, p50_latency_ms=stats.p50_latency_ms, p95_latency_ms=stats.p95_latency_ms,
                       p50_ttft_ms=stats.p50_ttft_ms, p95_ttft_ms=stats.p95_ttft_ms)


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
        stats = deployment.adapter_usage(adapter.name)
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
    desired_replicas: int
    queued_requests: int
    created_at: float
    cost: CostView
    warnings: list[str] = Field(default_factory=list)
    """On create: what could not be checked (a model's size when the Hub did not answer)."""
    metrics: MetricsView | None = None
    """None until the leader has observed it once, and once it is stopped or failed."""
    adapters: list[AdapterView]


def view(deployment: LiveDeployment, warnings: list[str] | None = None) -> DeploymentView:
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
        ready_replicas=len(deployment.ready_replicas()), desired_replicas=deployment.wanted(),
        queued_requests=deployment.queued,
        created_at=deployment.created_at, warnings=warnings or [],
        cost=CostView(price_per_replica_hour=spec.price_per_replica_hour,
                      replica_seconds=round(deployment.replica_seconds, 3),
                      usd=round(cost_usd(deployment), 6),
                      usd_per_hour=usd_per_hour(deployment)),
        metrics=metrics_view(deployment.traffic()),
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


def placeable(svc: Services, providers: list[str], cloudburst: bool) -> None:
    """A 422 naming `providers` when the deployment names a provider this control plane does not run:
    every replica start would fail with that cause otherwise."""
    try:
        placement_order(providers, cloudburst, svc.settings.provider_names)
    except PlacementError as exc:
        # The message names the field already ("providers aws not run by this control plane ...").
        raise ApiError(422, str(exc), code="invalid_spec", param="providers",
                       details=[{"field": "providers", "message": str(exc)}]) from None


async def create_deployment(svc: Services, tenant: str, spec: DeploymentSpec) -> LiveDeployment:
    return (await create_checked(svc, tenant, spec))[0]


async def create_checked(svc: Services, tenant: str, spec: DeploymentSpec) -> tuple[LiveDeployment, list[str]]:
    """Create after checking it can be placed and, for a model the catalogue does not know, that it fits;
    return the warnings the fit check left. Every create (native, compatibility, declared) comes here."""
    placeable(svc, list(spec.providers), spec.cloudburst)
    warnings = await fit_warnings(spec)
    try:
        return await svc.actions.create(tenant, spec, warnings), warnings
    except DuplicateName as exc:
        raise ApiError(409, str(exc), code="duplicate_name", param="name") from exc


async def fit_warnings(spec: DeploymentSpec) -> list[str]:
    """Refuse (422, with the numbers) a model whose weights the Hub says cannot fit the replica's GPUs; when the
    Hub cannot say, accept with a warning rather than refuse a model that may well fit."""
    if not needs_lookup(spec):
        return []
    found = await asyncio.to_thread(lookup_size, spec)
    profile = PROFILES[spec.hardware_profile]
    if found.size is None:
        return [f"could not check that {spec.hf_model_id} fits {spec.gpus_per_replica} x {profile.gpu}: the "
                f"Hugging Face Hub did not give its size ({found.unknown_because}); created unchecked"]
    problem = fit_problem(found.size, profile, spec.gpus_per_replica)
    if problem:
        raise ApiError(422, f"hf_model_id: {problem}", code="invalid_spec", param="hf_model_id",
                       details=[{"field": "hf_model_id", "message": problem}])
    return []


async def update_deployment(svc: Services, deployment: LiveDeployment, change: DeploymentUpdate) -> None:
    if deployment.status is DeploymentStatus.deleted:
        raise ApiError(404, f"Deployment {deployment.id} was deleted.")
    changes = change.changes()
    if {"providers", "cloudburst"} & changes.keys():
        placeable(svc, list(changes.get("providers", deployment.spec.providers)),
                  bool(changes.get("cloudburst", deployment.spec.cloudburst)))
    try:
        await svc.actions.update(deployment, change)
    except ValidationError as exc:
        raise invalid(exc) from exc


@router.post("/v1/deployments", status_code=201, response_model=DeploymentView)
async def create(spec: DeploymentSpec, request: Request, tenant: str = Depends(admin_tenant_id)) -> DeploymentView:
    return view(*await create_checked(services(request), tenant, spec))


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


class ReplicaLogView(BaseModel):
    replica_id: str
    status: str
    lines: list[str]
    """The last lines, anything that looks like a secret replaced by `[redacted]`."""
    unavailable: str | None = None
    """Why no lines could be read (the file or stream is gone), else None."""


LOGGED_REPLICAS = 5
"""Without a replica named, the logs of the deployment's most recent replicas (a failed start's included)."""


@router.get("/v1/deployments/{ref}/logs")
async def logs(ref: str, request: Request, replica: str | None = None,
               tail: int = Query(100, ge=1, le=MAX_TAIL), tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    """The last `tail` lines of what a replica wrote (local: its log file; AWS: its CloudWatch stream)."""
    svc = services(request)
    deployment = find(svc, tenant, ref)
    rows = await asyncio.to_thread(svc.store.list_replicas, deployment.id)
    if replica is not None:
        rows = [r for r in rows if r.id == replica]
        if not rows:
            raise ApiError(404, f"Deployment {deployment.id} has no replica {replica!r}.", code="replica_not_found",
                           param="replica")
    known = [r.api_key for r in deployment.replicas.values()]
    if deployment.spec.hf_token is not None:
        known.append(deployment.spec.hf_token.get_secret_value())
    cloudwatch = CloudWatchLogs(svc.settings.aws.region, svc.settings.aws.endpoint_url)
    data = []
    for row in rows[-LOGGED_REPLICAS:]:
        try:
            view_ = ReplicaLogView(replica_id=row.id, status=row.status,
                                   lines=await read_log(row.log_path, tail, cloudwatch, known))
        except LogUnavailable as exc:
            view_ = ReplicaLogView(replica_id=row.id, status=row.status, lines=[], unavailable=str(exc))
        data.append(view_.model_dump())
    return {"object": "list", "data": data}


@router.get("/v1/deployments/{ref}/events")
async def events(ref: str, request: Request, limit: int = 100,
                 tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    rows = await asyncio.to_thread(svc.store.list_events, deployment.id, min(max(limit, 1), 1000))
    return {"object": "list", "data": [
        {"at": e.at, "kind": e.kind, "message": e.message, "data": e.data} for e in rows]}


def model_object(deployment: LiveDeployment) -> dict[str, Any]:
    """OpenAI's model object (what the SDKs read: id, object, created, owned_by), plus the deployment's name."""
    return {"id": deployment.id, "object": "model", "created": int(deployment.created_at),
            "owned_by": deployment.tenant_id, "name": deployment.name, "root": deployment.spec.hf_model_id,
            "parent": None, "status": deployment.status.value, "task": deployment.spec.task.value}


@router.get("/v1/models")
async def models(request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    """OpenAI's model list: the caller's deployments, by id (the name works as `model` too), each followed
    by its LoRA adapters, with the deployment as `parent` as vLLM lists them."""
    fleet = services(request).fleet
    return {"object": "list", "data": [m for d in fleet.all() if d.tenant_id == tenant
                                       for m in [model_object(d), *adapter_objects(d)]]}


def adapter_objects(deployment: LiveDeployment, only: str | None = None) -> list[dict[str, Any]]:
    """Its LoRA adapters (or the one named `only`) as model objects, with the deployment as `parent` as
    vLLM lists them."""
    return [model_object(deployment) | {"id": adapter_model(deployment.name, a.name), "name": a.name,
                                        "root": a.source, "parent": deployment.id}
            for a in deployment.spec.adapters if only in (None, a.name)]


@router.get("/v1/models/{ref}")
async def model(ref: str, request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    """One model (`client.models.retrieve`): whatever `model` may name in a request (a deployment's id or
    name, or `<deployment-name>:<adapter>`), resolved as the gateway does; anyone else's is absent."""
    found = services(request).fleet.resolve_model(tenant, ref)
    if found is None:
        raise ApiError(404, f"The model `{ref}` does not exist.", code="model_not_found", param="model")
    deployment, adapter = found
    return model_object(deployment) if adapter is None else adapter_objects(deployment, adapter)[0]
