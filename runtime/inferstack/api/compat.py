"""Compatibility routes for the two platforms inferstack replaces: switch by changing the base URL.

Each request is mapped onto the native spec and goes through the same validation; a field value
this system cannot honour is a 422 that says so, never silently ignored. Placement (`cloud_providers`,
`use_on_prem`, `on_prem_node_ids`, `use_cloudburst`, `instance_types`) maps onto the spec's
`providers`, `node_names`, `cloudburst` and `instance_types` (providers/placement.py). `base_model` with
`model` = a LoRA adapter adds the adapter to the caller's deployment of that base model (or creates one).
Errors answer in these
platforms' own `{"success": false, "message"}` shape (the app's error handler picks it by path).

`/sg_inf` answers as that platform documents (`{"success": true, "message": {"inf_id"}}` on create). Its
values inferstack already satisfies pass; any other is "Not supported by inferstack: <field> (why)", an
undocumented field included, and a refusal of the native spec names the platform's fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from inferstack.api.deployments import create_deployment, find, invalid, update_deployment
from inferstack.api.deps import Services, admin_tenant_id, services, tenant_id
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment
from inferstack.lora import AdapterSpec, adapter_model
from inferstack.spec import DeploymentSpec, DeploymentUpdate, describe_errors

router = APIRouter(tags=["compatibility"])

SG_INF_PREFIX = "/sg_inf"
COMPAT_PREFIXES = ("/api/v2/external/", SG_INF_PREFIX)


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


# The platform's fields that map onto one native spec field each: platform name -> native name.
WORKER_FIELDS = {"min_workers": "min_replicas", "max_workers": "max_replicas",
                 "initial_workers_gpu_num": "gpus_per_replica", "instance_types": "instance_types",
                 "on_prem_node_ids": "node_names", "use_cloudburst": "cloudburst"}
SCALING_FIELDS = {"lower_allowed_latency_sec": "scale_down_below_latency_ms",
                  "upper_allowed_latency_sec": "target_latency_p95_ms",
                  "scale_to_zero_timeout_sec": "idle_timeout_s", "scaling_up_timeout_sec": "scale_up_cooldown_s",
                  "scaling_down_timeout_sec": "stabilisation_window", "time_window_sec": "metrics_window_s"}
# max_throughput_rate is the platform's per-worker request rate that triggers scale-up.
TOP_FIELDS = {"hf_token": "hf_token", "allow_spot_instances": "allow_spot", "max_price_per_hour": "max_price_per_hour",
              "max_throughput_rate": "target_rps"}
SECONDS_AS_MS = frozenset({"lower_allowed_latency_sec", "upper_allowed_latency_sec"})
UNSET_WHEN_ZERO = frozenset({"initial_workers_gpu_num", "max_price_per_hour", "max_throughput_rate"})
"""The platform's own example sends 0 for these: its default GPU count, no price cap, its default rate."""
PLATFORM_NAMES = {
    **{native: f"initial_worker_config.{name}" for name, native in WORKER_FIELDS.items()},
    **{native: f"autoscaling_config.{name}" for name, native in SCALING_FIELDS.items()},
    **{native: name for name, native in TOP_FIELDS.items()},
    "hf_model_id": "model", "hardware_profile": "initial_worker_config.initial_workers_gpu",
    "providers": "cloud_providers", "task": "inf_type",
}
"""Native field -> the platform's, so a refusal names the field the caller sent."""
NATIVE_WORD = re.compile(r"\b(" + "|".join(sorted(PLATFORM_NAMES, key=len, reverse=True)) + r")\b")


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_workers: int | None = None
    max_workers: int | None = None
    initial_workers_gpu: str | None = None
    initial_workers_gpu_num: int | None = None
    use_same_gpus_when_scaling: bool | None = None
    """Either value is satisfied: a deployment's replicas are identical, always on the same GPUs."""
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

    enable_speedup_shared: bool | None = None
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
    logs_store: str | None = None
    data_path: str | None = None
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


def _unsupported(body: SgInfFields) -> list[str]:
    """The fields set to what inferstack cannot honour, each with why; their no-op values pass."""
    scaling = body.autoscaling_config
    return [refusal for refused, refusal in [
        (bool(body.gateway_config), "gateway_config (the gateway is part of the control plane, where it runs)"),
        (bool(body.logs_store), "logs_store (replica logs stay where the replica runs: INFERSTACK_HOME/logs on "
                                "the local provider, CloudWatch on AWS)"),
        (bool(body.data_path), "data_path (inferstack serves models and does not finetune; deploy the "
                               "finetuned model)"),
        (scaling is not None and bool(scaling.enable_speedup_shared),
         "autoscaling_config.enable_speedup_shared (replicas are dedicated, never shared)"),
    ] if refused]


def _mapped(section: BaseModel | None, names: dict[str, str]) -> dict[str, Any]:
    """The section's fields that are set, under their native names, in native units."""
    if section is None:
        return {}
    out = {}
    for name, native in names.items():
        value = getattr(section, name)
        if value is None or (name in UNSET_WHEN_ZERO and value == 0):
            continue
        out[native] = value * 1000 if name in SECONDS_AS_MS else value
    return out


def _sg_inf_fields(body: SgInfFields) -> dict[str, Any]:
    """Native spec fields for the platform's fields; 422 for what cannot be honoured."""
    unsupported = _unsupported(body)
    if unsupported:
        raise ApiError(422, "Not supported by inferstack: " + "; ".join(unsupported))
    fields: dict[str, Any] = {}
    worker = body.initial_worker_config
    on_prem = worker is not None and bool(worker.use_on_prem or worker.on_prem_node_ids)
    if body.cloud_providers is not None or on_prem:
        fields["providers"] = _providers(body.cloud_providers, on_prem)
    if worker is not None and worker.initial_workers_gpu is not None:
        profile = GPU_NAMES.get(worker.initial_workers_gpu.upper())
        if profile is None:
            raise ApiError(422, f"initial_worker_config.initial_workers_gpu {worker.initial_workers_gpu!r} "
                                f"is unknown; choose one of {', '.join(GPU_NAMES)}")
        fields["hardware_profile"] = profile
    scaling = body.autoscaling_config
    if (scaling is not None and None not in (scaling.lower_allowed_latency_sec, scaling.upper_allowed_latency_sec)
            and scaling.lower_allowed_latency_sec >= scaling.upper_allowed_latency_sec):  # type: ignore[operator]
        # Checked here, in the platform's seconds: the spec would say it in milliseconds.
        raise ApiError(422, f"autoscaling_config.lower_allowed_latency_sec ({scaling.lower_allowed_latency_sec:g}) "
                            "must be below autoscaling_config.upper_allowed_latency_sec "
                            f"({scaling.upper_allowed_latency_sec:g})")
    return (fields | _mapped(worker, WORKER_FIELDS) | _mapped(scaling, SCALING_FIELDS)
            | _mapped(body, TOP_FIELDS))


def raised_ceiling(fields: dict[str, Any], current_max: int) -> tuple[dict[str, Any], str]:
    """The platform's PUT has no max field: a floor above the current ceiling raises the ceiling with it."""
    floor = fields.get("min_replicas")
    if "max_replicas" in fields or floor is None or floor <= current_max:
        return fields, ""
    return fields | {"max_replicas": floor}, f"; max workers raised from {current_max} to {floor} with min_workers"


def sg_inf_refusal(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """A request the platform's models refused, said in its terms: an unknown field is not supported."""
    unknown = [".".join(str(p) for p in e["loc"] if p != "body") for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return ApiError(422, "Not supported by inferstack: " + "; ".join(f"{name} (not a field of this API)"
                                                                         for name in unknown))
    return ApiError(422, describe_errors(errors))


@router.post("/sg_inf/create")
async def sg_inf_create(body: SgInfCreate, request: Request, tenant: str = Depends(admin_tenant_id)) -> dict[str, Any]:
    fields = _sg_inf_fields(body)
    if body.base_model and body.base_model != body.model:
        return await _sg_inf_adapter(services(request), tenant, body, fields)
    spec = _new_sg_inf_spec({"name": body.name, "hf_model_id": body.model,
                             "task": "embed" if body.inf_type == "embedding" else "generate"}, fields)
    deployment = await _create_as_sg_inf(services(request), tenant, spec)
    return {"success": True, "message": {"inf_id": deployment.id}}


async def _create_as_sg_inf(svc: Services, tenant: str, spec: DeploymentSpec) -> LiveDeployment:
    try:
        return await create_deployment(svc, tenant, spec)
    except ApiError as error:
        raise as_sg_inf(error) from error


def _new_sg_inf_spec(identity: dict[str, Any], fields: dict[str, Any]) -> DeploymentSpec:
    """A new deployment from that platform's create: its defaults (an A100; max workers no fewer than min,
    as its create has no max field) under what the request gave."""
    defaults = {"hardware_profile": "gpu.a100", "max_replicas": max(fields.get("min_replicas", 1), 1)}
    return _validated_as_sg_inf({**identity, **defaults, **fields})


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
        spec = _new_sg_inf_spec({"hf_model_id": body.base_model, "adapters": [adapter.model_dump()]}, fields)
        deployment = await _create_as_sg_inf(svc, tenant, spec)
        verb = "created"
    model = adapter_model(deployment.name, adapter.name)
    # The documented answer, plus the `model` to call the adapter by and whether its base was new.
    return {"success": True, "message": {"inf_id": deployment.id, "model": model, "base": verb}}


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
    fields, note = raised_ceiling(_sg_inf_fields(body), deployment.spec.max_replicas)
    try:
        change = DeploymentUpdate(**fields, immediate_scale_down=body.imidiate_scale_down)
        await update_deployment(svc, deployment, change)
    except ValidationError as exc:
        raise as_sg_inf(invalid(exc)) from exc
    except ApiError as error:
        raise as_sg_inf(error) from error
    return {"success": True, "message": f"Deployment {deployment.id} updated{note}"}


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


def _validated_as_sg_inf(fields: dict[str, Any]) -> DeploymentSpec:
    try:
        return _validated(fields)
    except ApiError as error:
        raise as_sg_inf(error) from error


def as_sg_inf(error: ApiError) -> ApiError:
    """A refusal of the native spec, naming the platform's fields instead of the native ones."""
    if not error.details:
        return error
    parts = []
    for detail in error.details:
        field, message = _platform_words(detail["field"]), _platform_words(detail["message"])
        parts.append(message if not field or message.startswith(field) else f"{field}: {message}")
    return ApiError(error.status, "; ".join(parts), code=error.code)


def _platform_words(text: str) -> str:
    return NATIVE_WORD.sub(lambda m: PLATFORM_NAMES[m.group(0)], text)
