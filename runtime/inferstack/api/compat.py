"""Compatibility routes for the two platforms inferstack replaces: switch by changing the base URL.

Each request is mapped onto the native spec and goes through the same validation; a field value
this system cannot honour is a 422 that says so, never silently ignored. Placement (`cloud_providers`,
`use_on_prem`, `on_prem_node_ids`, `use_cloudburst`, `instance_types`) maps onto the spec's
`providers`, `node_names`, `cloudburst` and `instance_types` (providers/placement.py). `base_model` with
`model` = a LoRA adapter adds the adapter to the caller's deployment of that base model (or creates one).
Errors answer in these
platforms' own `{"success": false, "message"}` shape (the app's error handler picks it by path).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from inferstack.api.deployments import create_deployment, find, invalid, update_deployment
from inferstack.api.deps import Services, admin_tenant_id, services, tenant_id
from inferstack.errors import ApiError
from inferstack.lora import AdapterSpec, adapter_model
from inferstack.spec import DeploymentSpec, DeploymentUpdate, describe_errors

router = APIRouter(tags=["compatibility"])

COMPAT_PREFIXES = ("/api/v2/external/", "/sg_inf")


# --- the dedicated-deployment platform -------------------------------------------------------------
class DedicatedCreate(BaseModel):
    """The platform's required fields; any other native spec field may come along (validated by the spec)."""

    model_config = ConfigDict(extra="allow")

    hf_model_id: str
    hardware_profile: str
    target_rps: float
    target_latency_p95_ms: float
    stabilisation_window: float


@router.post("/api/v2/external/inference/create")
async def dedicated_create(body: DedicatedCreate, request: Request,
                           tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    spec = _validated(body.model_dump())
    deployment = await create_deployment(services(request), tenant, spec)
    return {"success": True, "deployment_id": deployment.id, "status": deployment.status.value}


@router.get("/api/v2/external/inference/get")
async def dedicated_get(deployment_id: str, request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    deployment = find(services(request), tenant, deployment_id)
    spec = deployment.spec
    return {
        "success": True, "deployment_id": deployment.id, "status": deployment.status.value,
        "hf_model_id": spec.hf_model_id, "hardware_profile": spec.hardware_profile,
        "min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas, "target_rps": spec.target_rps,
        "target_latency_p95_ms": spec.target_latency_p95_ms, "stabilisation_window": spec.stabilisation_window,
        "replicas": len(deployment.replicas), "ready_replicas": len(deployment.ready_replicas()),
    }


# --- the inference-API platform (sg_inf) -----------------------------------------------------------
GPU_NAMES = {
    "L4": "gpu.l4", "A10G": "gpu.a10g", "L40S": "gpu.l40s", "A100": "gpu.a100", "A100_40GB": "gpu.a100",
    "A100_80GB": "gpu.a100-80gb", "A100-80GB": "gpu.a100-80gb", "H100": "gpu.h100", "H100_80GB": "gpu.h100",
    "H200": "gpu.h200", "CPU": "cpu",
}


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_workers: int | None = None
    max_workers: int | None = None
    initial_workers_gpu: str | None = None
    initial_workers_gpu_num: int | None = None
    use_same_gpus_when_scaling: bool | None = None
    instance_types: list[str] | None = None
    use_on_prem: bool | None = None
    on_prem_node_ids: list[str] | None = None
    use_cloudburst: bool | None = None


# The platform's cloud names -> our providers. On-prem machines are the Kubernetes provider's nodes.
CLOUD_NAMES = {"aws": "aws", "amazon": "aws", "kubernetes": "kubernetes", "k8s": "kubernetes",
               "on_prem": "kubernetes", "onprem": "kubernetes"}


def _providers(clouds: list[Any] | None, on_prem: bool) -> list[str]:
    """`cloud_providers` (names, or objects with a `name`) and `use_on_prem` as an ordered placement:
    on-prem first, then the clouds in the order given."""
    names = [c.get("name") if isinstance(c, dict) else c for c in clouds or []]
    unknown = [str(n) for n in names if not isinstance(n, str) or n.lower() not in CLOUD_NAMES]
    if unknown:
        raise ApiError(422, f"cloud_providers: {', '.join(unknown)} not supported; choose among aws, kubernetes "
                            "(on-prem GPU nodes: initial_worker_config.use_on_prem)")
    placed = (["kubernetes"] if on_prem else []) + [CLOUD_NAMES[n.lower()] for n in names if isinstance(n, str)]
    return list(dict.fromkeys(placed))


class AutoscalingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lower_allowed_latency_sec: float | None = None
    upper_allowed_latency_sec: float | None = None
    scale_to_zero_timeout_sec: float | None = None
    scaling_up_timeout_sec: float | None = None
    scaling_down_timeout_sec: float | None = None
    time_window_sec: float | None = None


class SgInfFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hf_token: SecretStr | None = None
    allow_spot_instances: bool | None = None
    cloud_providers: list[Any] | None = None
    gateway_config: dict[str, Any] | None = None
    initial_worker_config: WorkerConfig | None = None
    autoscaling_config: AutoscalingConfig | None = None
    max_price_per_hour: float | None = None
    max_throughput_rate: float | None = None


class SgInfCreate(SgInfFields):
    name: str | None = None
    model: str
    base_model: str | None = None
    inf_type: Literal["llm", "embedding"] = "llm"


class SgInfUpdate(SgInfFields):
    imidiate_scale_down: bool = False  # sic: the platform's own spelling


def _sg_inf_fields(body: SgInfFields) -> dict[str, Any]:
    """Native spec fields for the platform's fields; 422 for what cannot be honoured."""
    unsupported = []
    if body.gateway_config:
        unsupported.append("gateway_config (the gateway is part of the control plane)")
    fields: dict[str, Any] = {}
    worker = body.initial_worker_config
    on_prem = worker is not None and bool(worker.use_on_prem or worker.on_prem_node_ids)
    if body.cloud_providers is not None or on_prem:
        fields["providers"] = _providers(body.cloud_providers, on_prem)
    if worker is not None:
        fields |= _present(instance_types=worker.instance_types, node_names=worker.on_prem_node_ids,
                           cloudburst=worker.use_cloudburst)
        if worker.use_same_gpus_when_scaling is False:
            unsupported.append("initial_worker_config.use_same_gpus_when_scaling=false (replicas are identical)")
        if worker.initial_workers_gpu is not None:
            profile = GPU_NAMES.get(worker.initial_workers_gpu.upper())
            if profile is None:
                raise ApiError(422, f"initial_worker_config.initial_workers_gpu {worker.initial_workers_gpu!r} "
                                    f"is unknown; choose one of {', '.join(GPU_NAMES)}")
            fields["hardware_profile"] = profile
        fields |= _present(min_replicas=worker.min_workers, max_replicas=worker.max_workers,
                           gpus_per_replica=worker.initial_workers_gpu_num)
    scaling = body.autoscaling_config
    if scaling is not None:
        fields |= _present(
            scale_down_below_latency_ms=_ms(scaling.lower_allowed_latency_sec),
            target_latency_p95_ms=_ms(scaling.upper_allowed_latency_sec),
            idle_timeout_s=scaling.scale_to_zero_timeout_sec,
            scale_up_cooldown_s=scaling.scaling_up_timeout_sec,
            stabilisation_window=scaling.scaling_down_timeout_sec,
            metrics_window_s=scaling.time_window_sec,
        )
    if unsupported:
        raise ApiError(422, "Not supported by inferstack: " + "; ".join(unsupported))
    # max_throughput_rate is the platform's per-worker request rate that triggers scale-up.
    return fields | _present(hf_token=body.hf_token, allow_spot=body.allow_spot_instances,
                             max_price_per_hour=body.max_price_per_hour, target_rps=body.max_throughput_rate)


@router.post("/sg_inf/create")
async def sg_inf_create(body: SgInfCreate, request: Request, tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    fields = _sg_inf_fields(body)
    if body.base_model and body.base_model != body.model:
        return await _sg_inf_adapter(services(request), tenant, body, fields)
    fields.setdefault("hardware_profile", "gpu.a100")
    fields.setdefault("max_replicas", max(fields.get("min_replicas", 1), 1))
    spec = _validated({"name": body.name, "hf_model_id": body.model,
                       "task": "embed" if body.inf_type == "embedding" else "generate", **fields})
    deployment = await create_deployment(services(request), tenant, spec)
    return {"success": True, "message": f"Deployment {deployment.id} created", "id": deployment.id,
            "status": deployment.status.value}


async def _sg_inf_adapter(svc: Services, tenant: str, body: SgInfCreate, fields: dict[str, Any]) -> dict[str, Any]:
    """`model` is a LoRA adapter of `base_model`: it joins the caller's deployment of that base model (the
    oldest, when there are several), or a new one is created for it. The adapter is named `name` (else
    the last part of `model`), and called as `<deployment-name>:<adapter>`."""
    adapter_name = body.name or re.sub(r"[^a-z0-9._-]+", "-", body.model.rstrip("/").rsplit("/", 1)[-1].lower())
    try:
        adapter = AdapterSpec(name=adapter_name.strip("-._") or "adapter", source=body.model)
    except ValidationError as exc:
        raise ApiError(422, f"model: {describe_errors(exc.errors())}", param="model") from exc
    bases = sorted((d for d in svc.fleet.all() if d.tenant_id == tenant and d.spec.hf_model_id == body.base_model
                    and d.spec.task.value == "generate"), key=lambda d: d.created_at)
    if bases:
        deployment = bases[0]
        try:
            await svc.actions.add_adapter(deployment, adapter)
        except ValidationError as exc:
            raise invalid(exc) from exc
        verb = "extended"
    else:
        fields.setdefault("hardware_profile", "gpu.a100")
        fields.setdefault("max_replicas", max(fields.get("min_replicas", 1), 1))
        spec = _validated({"hf_model_id": body.base_model, "adapters": [adapter.model_dump()], **fields})
        deployment = await create_deployment(svc, tenant, spec)
        verb = "created"
    model = adapter_model(deployment.name, adapter.name)
    return {"success": True, "message": f"Deployment {deployment.id} {verb} with adapter {model}",
            "id": deployment.id, "model": model, "status": deployment.status.value}


@router.get("/sg_inf/{ref}")
async def sg_inf_get(ref: str, request: Request, tenant: str = Depends(tenant_id)) -> dict[str, Any]:
    deployment = find(services(request), tenant, ref)
    return {"success": True, "message": {"id": deployment.id, "name": deployment.name,
                                         "status": deployment.status.value, "spec": deployment.spec.public(),
                                         "workers": len(deployment.replicas),
                                         "ready_workers": len(deployment.ready_replicas())}}


@router.put("/sg_inf/{ref}")
async def sg_inf_update(ref: str, body: SgInfUpdate, request: Request,
                        tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    try:
        change = DeploymentUpdate(**_sg_inf_fields(body), immediate_scale_down=body.imidiate_scale_down)
    except ValidationError as exc:
        raise invalid(exc) from exc
    await update_deployment(svc, deployment, change)
    return {"success": True, "message": f"Deployment {deployment.id} updated"}


@router.delete("/sg_inf/{ref}")
async def sg_inf_delete(ref: str, request: Request, tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    svc = services(request)
    deployment = find(svc, tenant, ref)
    await svc.actions.delete(deployment)
    return {"success": True, "message": f"Deployment {deployment.id} deleted"}


def _validated(fields: dict[str, Any]) -> DeploymentSpec:
    try:
        return DeploymentSpec.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc) from exc


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
