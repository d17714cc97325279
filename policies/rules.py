"""The inferstack policy rules: plain functions of (resources, stack, config) -> violation messages.

No Pulumi types here: `policies/__main__.py` adapts each rule to a CrossGuard policy, and the tests
call the rules directly. A deployment is read with the shared spec (`DeploymentSpec`), so a price or
a default means the same thing here as in the control plane.

Resources are seen as the policy engine sees them: the Pulumi type, the properties (secrets already
unwrapped: a policy cannot tell a secret by its value, so the secret rule checks *where* a token is
used), and the outputs the program marked secret.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

import pricing
from inferstack.secret_scan import TOKEN_PATTERNS
from inferstack.settings import Env
from inferstack.spec import SPEC_FIELDS, DeploymentSpec

DEPLOYMENT_TYPE = "pulumi-python:dynamic/inferstack:Deployment"
LOCAL_CONTROL_PLANE_TYPE = "pulumi-python:dynamic/inferstack:LocalControlPlane"
HF_TOKEN_PATTERN = TOKEN_PATTERNS["a Hugging Face token"]  # the spec's detector: one pattern everywhere
TOKEN_ENV_NAMES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", Env.TOKEN_KEY})
"""Variables that hold a token, or the key that seals stored tokens: only ever from a secret."""
ANY_STACK = "*"
SECRET_HOLDERS = frozenset({
    DEPLOYMENT_TYPE, "kubernetes:core/v1:Secret", "aws:secretsmanager/secretVersion:SecretVersion"})
"""Resources whose job is to hold a token (as a secret); every other resource must not contain one."""


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    secret_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyConfig:
    """Every rule's settings. Maps keyed by stack name fall back to the `*` entry."""

    production_stacks: frozenset[str] = frozenset({"prod"})
    allowed_hardware_profiles: Mapping[str, Sequence[str]] = field(default_factory=lambda: {
        "prod": ["gpu.l4", "gpu.a10g", "gpu.l40s", "gpu.a100", "gpu.a100-80gb", "gpu.h100"],
        ANY_STACK: ["cpu", "gpu.l4", "gpu.a10g"],
    })
    max_replicas_ceiling: int = 16
    monthly_budget_usd: Mapping[str, float] = field(default_factory=lambda: {"prod": 80_000.0, ANY_STACK: 5_000.0})
    hours_per_month: float = 730.0
    stabilisation_window_floor_s: float = 120.0
    spot_allowed_stacks: frozenset[str] = frozenset({"prod"})

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PolicyConfig:
        """From the policy pack's config (JSON); unknown keys are ignored, missing ones default."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name in raw:
                value = raw[name]
                values[name] = frozenset(value) if name in ("production_stacks", "spot_allowed_stacks") else value
        return cls(**values)


def for_stack(mapping: Mapping[str, Any], stack: str) -> Any:
    return mapping.get(stack, mapping.get(ANY_STACK))


# --- reading resources ----------------------------------------------------------------------------------


def deployment_spec(resource: Resource) -> DeploymentSpec | None:
    """The spec of an `inferstack:Deployment` resource, or None for any other resource."""
    if resource.type != DEPLOYMENT_TYPE:
        return None
    fields = {k: v for k, v in resource.props.items() if k in SPEC_FIELDS and v is not None}
    try:
        return DeploymentSpec.model_validate(fields)
    except ValidationError:
        return None  # the program and the provider's check report invalid specs themselves


def _label(resource: Resource, spec: DeploymentSpec | None = None) -> str:
    return f"deployment {spec.name!r}" if spec is not None and spec.name else f"{resource.type} {resource.name!r}"


# --- resource rules: one resource -> violations ---------------------------------------------------------


def allowed_hardware_profiles(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    spec = deployment_spec(resource)
    if spec is None:
        return []
    allowed = for_stack(config.allowed_hardware_profiles, stack) or []
    if spec.hardware_profile in allowed:
        return []
    return [f"{_label(resource, spec)} uses hardware_profile {spec.hardware_profile!r}, which stack {stack!r} "
            f"does not allow (allowed: {', '.join(allowed) or 'none'})"]


def max_replicas_ceiling(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    spec = deployment_spec(resource)
    if spec is None or spec.max_replicas <= config.max_replicas_ceiling:
        return []
    return [f"{_label(resource, spec)} has max_replicas {spec.max_replicas}, above the ceiling of "
            f"{config.max_replicas_ceiling}"]


def scale_to_zero_outside_prod(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    spec = deployment_spec(resource)
    if spec is None or stack in config.production_stacks or spec.min_replicas == 0:
        return []
    return [f"{_label(resource, spec)} keeps min_replicas {spec.min_replicas} in non-production stack {stack!r}: "
            "set min_replicas: 0 so idle GPUs are released"]


def stabilisation_window_floor(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    spec = deployment_spec(resource)
    if spec is None or spec.stabilisation_window >= config.stabilisation_window_floor_s:
        return []
    return [f"{_label(resource, spec)} has stabilisation_window {spec.stabilisation_window:g} s, below the floor "
            f"of {config.stabilisation_window_floor_s:g} s (replicas would flap on noisy load)"]


def spot_only_where_allowed(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    if stack in config.spot_allowed_stacks:
        return []
    spec = deployment_spec(resource)
    if spec is not None and spec.allow_spot:
        return [f"{_label(resource, spec)} asks for spot capacity, which stack {stack!r} does not allow"]
    if resource.type == "aws:autoscaling/group:Group":
        distribution = (resource.props.get("mixedInstancesPolicy") or {}).get("instancesDistribution") or {}
        if distribution and distribution.get("onDemandPercentageAboveBaseCapacity", 100) < 100:
            return [f"{_label(resource)} launches spot instances, which stack {stack!r} does not allow"]
    if resource.type == "aws:ec2/launchTemplate:LaunchTemplate" and resource.props.get("instanceMarketOptions"):
        return [f"{_label(resource)} requests spot instances, which stack {stack!r} does not allow"]
    return []


def hf_token_is_secret(resource: Resource, stack: str, config: PolicyConfig) -> list[str]:
    """A Hugging Face token is only ever a secret: a secret input, a Secret reference, a fetch at boot.

    Never a literal in a pod's env, a ConfigMap, user data, an SSM String or an ECS environment.
    """
    problems = []
    declared_secret = "hf_token" in resource.secret_outputs
    if resource.type == DEPLOYMENT_TYPE and resource.props.get("hf_token") and not declared_secret:
        problems.append(f"{_label(resource, deployment_spec(resource))} takes hf_token without marking it secret")
    for container in _containers(resource):
        for variable in container.get("env") or []:
            if variable.get("name") in TOKEN_ENV_NAMES and "value" in variable:
                problems.append(f"{_label(resource)} sets {variable['name']} as a plain value: use a secretKeyRef")
    if resource.type == "aws:ecs/taskDefinition:TaskDefinition":
        for container in _ecs_containers(resource):
            for variable in container.get("environment") or []:
                if variable.get("name") in TOKEN_ENV_NAMES:
                    problems.append(f"{_label(resource)} puts {variable['name']} in its environment: use `secrets`")
    if resource.type not in SECRET_HOLDERS and HF_TOKEN_PATTERN.search(_flatten(resource.props)):
        problems.append(f"{_label(resource)} contains a Hugging Face token in plain text")
    return problems


# --- stack rules: every resource -> violations ---------------------------------------------------------


def monthly_budget(resources: Sequence[Resource], stack: str, config: PolicyConfig) -> list[str]:
    """The worst case must fit the budget: every replica at max_replicas, priced by the machine it is
    launched on, plus the platform that bills at rest (`pricing`), times the hours of a month.

    E.g. prod: chat 6 x g6.xlarge (0.80 $/h) + chat-large 2 x p4de.24xlarge (8 x 5.12 = 40.96 $/h) +
    embed 3 x g6.xlarge = 89.12 $/h, plus 0.32 $/h of platform (2 Fargate tasks 0.10, Multi-AZ
    db.t4g.medium 0.14, NAT 0.045 + its address 0.005, ALB 0.03): 65,287.95 USD over 730 h.
    """
    budget = for_stack(config.monthly_budget_usd, stack)
    if budget is None:
        return []
    launched = pricing.launched_instance_types(resources)
    lines, hourly = [], 0.0
    try:
        for resource in resources:
            spec = deployment_spec(resource)
            if spec is None:
                continue
            instance = launched.get(spec.name or "")
            replica_hour = pricing.instance_hour(instance) if instance else spec.price_per_replica_hour
            hourly += spec.max_replicas * replica_hour
            machine = f" ({instance})" if instance else ""
            lines.append(f"{spec.name}: {spec.max_replicas} x {replica_hour:g} $/h{machine}")
        platform = pricing.platform_hourly(resources)
    except pricing.Unpriced as exc:
        return [f"stack {stack!r}: cannot check its budget: {exc} (add it to policies/pricing.py)"]
    if platform:
        at_rest = sum(p.usd_per_hour for p in platform)
        hourly += at_rest
        lines.append(f"platform {at_rest:.2f} $/h ({', '.join(p.what for p in platform)})")
    total = hourly * config.hours_per_month
    if total <= budget:
        return []
    return [f"stack {stack!r} can cost up to {total:,.2f} USD a month at max_replicas "
            f"({config.hours_per_month:g} h: {'; '.join(lines)}), over its budget of {budget:,.2f} USD"]


def public_endpoint_requires_api_keys(resources: Sequence[Resource], stack: str, config: PolicyConfig) -> list[str]:
    """Nothing is reachable from outside unless the control plane behind it has an API key from a secret.
    The control plane always demands keys; without a bootstrap key nobody could hold one, and a key in a
    plain value would be readable by anyone who can read the resource."""
    public = [r for r in resources if _is_public_entry(r)]
    if not public:
        return []
    planes = [r for r in resources if _is_control_plane(r)]
    unguarded = [r for r in planes if not _key_from_secret(r)]
    if planes and not unguarded:
        return []
    entries = ", ".join(_label(r) for r in public)
    if not planes:
        return [f"public endpoint(s) {entries} but no control plane that requires API keys"]
    return [f"public endpoint(s) {entries} in front of {_label(r)}, which has no bootstrap API key from a secret "
            f"(set {Env.BOOTSTRAP_API_KEY} from a Secret or Secrets Manager)" for r in unguarded]


RESOURCE_RULES = {
    "allowed-hardware-profiles": allowed_hardware_profiles,
    "max-replicas-ceiling": max_replicas_ceiling,
    "scale-to-zero-outside-prod": scale_to_zero_outside_prod,
    "stabilisation-window-floor": stabilisation_window_floor,
    "spot-only-where-allowed": spot_only_where_allowed,
    "hf-token-is-secret": hf_token_is_secret,
}
STACK_RULES = {
    "monthly-budget": monthly_budget,
    "public-endpoint-requires-api-keys": public_endpoint_requires_api_keys,
}


def check_all(resources: Sequence[Resource], stack: str, config: PolicyConfig) -> dict[str, list[str]]:
    """Every rule over a stack's resources: rule name -> violations (empty lists left out)."""
    found: dict[str, list[str]] = {}
    for name, rule in RESOURCE_RULES.items():
        messages = [m for r in resources for m in rule(r, stack, config)]
        if messages:
            found[name] = messages
    for name, stack_rule in STACK_RULES.items():
        messages = stack_rule(resources, stack, config)
        if messages:
            found[name] = messages
    return found


# --- helpers ---------------------------------------------------------------------------------------------


def _containers(resource: Resource) -> list[Mapping[str, Any]]:
    if not resource.type.startswith("kubernetes:"):
        return []
    spec = resource.props.get("spec") or {}
    pod = spec if resource.type == "kubernetes:core/v1:Pod" else ((spec.get("template") or {}).get("spec") or {})
    return [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]


def _ecs_containers(resource: Resource) -> list[Mapping[str, Any]]:
    raw = resource.props.get("containerDefinitions") or "[]"
    try:
        return json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        return []


def _flatten(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(_flatten(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(_flatten(v) for v in value)
    if isinstance(value, str) and value and len(value) % 4 == 0 and value.isascii() and " " not in value:
        import base64
        import binascii

        try:  # user data is base64: look inside it too
            return value + " " + base64.b64decode(value, validate=True).decode("utf-8", "ignore")
        except (binascii.Error, ValueError):
            return value
    return str(value) if value is not None else ""


def _is_public_entry(resource: Resource) -> bool:
    props = resource.props
    if resource.type == "aws:lb/loadBalancer:LoadBalancer":
        return props.get("internal") is not True
    if resource.type == "aws:apigatewayv2/api:Api":
        return True
    if resource.type == "kubernetes:networking.k8s.io/v1:Ingress":
        return True
    if resource.type == "kubernetes:core/v1:Service":
        return (props.get("spec") or {}).get("type") in ("LoadBalancer", "NodePort")
    if resource.type == LOCAL_CONTROL_PLANE_TYPE:
        try:
            return not ipaddress.ip_address(props.get("host", "127.0.0.1")).is_loopback
        except ValueError:
            return props.get("host") != "localhost"
    return False


def _is_control_plane(resource: Resource) -> bool:
    if resource.type == LOCAL_CONTROL_PLANE_TYPE:
        return True
    if resource.type == "kubernetes:apps/v1:Deployment":
        labels = ((resource.props.get("metadata") or {}).get("labels")) or {}
        return labels.get("app.kubernetes.io/component") == "control-plane"
    if resource.type == "aws:ecs/taskDefinition:TaskDefinition":
        return any("serve" in (c.get("command") or []) for c in _ecs_containers(resource))
    return False


def _key_from_secret(resource: Resource) -> bool:
    """The control plane gets its bootstrap key from a secret (the local one: inside its secret provider)."""
    if resource.type == LOCAL_CONTROL_PLANE_TYPE:
        return bool(resource.props.get("api_key_digest"))
    if resource.type == "aws:ecs/taskDefinition:TaskDefinition":
        return any(Env.BOOTSTRAP_API_KEY in {s.get("name") for s in container.get("secrets") or []}
                   for container in _ecs_containers(resource))
    for container in _containers(resource):
        env = {e.get("name"): e for e in container.get("env") or []}
        if ((env.get(Env.BOOTSTRAP_API_KEY) or {}).get("valueFrom") or {}).get("secretKeyRef"):
            return True
    return False
