"""The deployment spec: one pydantic model, validated once, shared by REST, CLI, Pulumi, policies and
the compatibility routes. The single source of truth for field names, defaults and limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from inferstack.hardware import MODELS, PROFILES, HardwareProfile, fit_problem
from inferstack.lora import LORA_RANKS, MAX_ADAPTERS, AdapterSpec, LoraLimits, needed_rank
from inferstack.plain_text import PlainText, control_character_problem
from inferstack.secret_scan import secret_findings

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The name rules as one JSON-schema pattern (ids are `dep-...`), so the OpenAPI document agrees with `_fits`.
NAME_SCHEMA_PATTERN = r"^(?!dep-)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MAX_ENGINE_ARGS = 64
MAX_ENGINE_ARG_LENGTH = 1000
MAX_TOKEN_LENGTH = 1000
DAY_S = 86_400.0


class Engine(StrEnum):
    vllm = "vllm"
    sim = "sim"  # simulated vLLM-compatible server: development and load tests, never a model


class Task(StrEnum):
    generate = "generate"
    embed = "embed"


class DeploymentStatus(StrEnum):
    created = "created"
    provisioning = "provisioning"
    running = "running"
    paused = "paused"
    stopped = "stopped"
    failed = "failed"
    deleted = "deleted"

    @classmethod
    def managed(cls) -> frozenset[DeploymentStatus]:
        """Statuses the controller reconciles every tick, and in which the gateway accepts requests
        (paused ones wake up)."""
        return frozenset({cls.created, cls.provisioning, cls.running, cls.paused})


class ReplicaStatus(StrEnum):
    starting = "starting"
    ready = "ready"
    draining = "draining"
    stopped = "stopped"
    failed = "failed"

    @classmethod
    def live(cls) -> frozenset[ReplicaStatus]:
        """Replicas that hold (or are about to hold) a GPU and count against capacity and cost."""
        return frozenset({cls.starting, cls.ready, cls.draining})


Target = Literal["local", "kubernetes", "aws"]
"""Where replicas can run: the providers a control plane may run (INFERSTACK_PROVIDERS)."""

FieldChange = Literal["identity", "replica", "live"]
"""What changing a spec field means. identity: another deployment (a PATCH refuses it; declared tools
delete and create). replica: new replicas (running ones are replaced one by one). live: the running
replicas stay; the controller uses the new value from its next tick."""


def _change(kind: FieldChange) -> dict[str, Any]:
    # Field metadata, also shown in the OpenAPI schema, so a client can tell what an edit costs.
    return {"change": kind}


class ScalingSpec(BaseModel):
    """The autoscaling fields: everything `autoscaler.decide` reads from a deployment.

    Every number is finite and bounded: JSON's Infinity passed `ge=0` and then failed the database
    write (PostgreSQL's JSON has no Infinity), and a timeout of 1e308 s overflows the event loop.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_replicas: int = Field(1, ge=0, le=64, description="Floor while awake; 0 allows no warm replica.")
    max_replicas: int = Field(1, ge=1, le=64)
    target_rps: float = Field(10.0, gt=0, le=1_000_000,
                              description="Requests per second one replica should carry: the rate replicas "
                                          "are planned and shrunk to; above it they first fill their spare "
                                          "slots while p95 is inside the target.")
    target_latency_p95_ms: float = Field(5000, gt=0, le=DAY_S * 1000,
                                         description="p95 end-to-end latency that adds capacity.")
    scale_down_below_latency_ms: float | None = Field(
        None, gt=0, le=DAY_S * 1000, description="Shrink only while p95 is below this (lower latency band)."
    )
    stabilisation_window: float = Field(
        300, ge=0, le=DAY_S, description="Seconds: shrink only to the highest recommendation seen within it."
    )
    scale_up_cooldown_s: float = Field(0, ge=0, le=DAY_S, description="Seconds between two scale-ups (outside panic).")
    metrics_window_s: float = Field(60, gt=0, le=3600)
    panic_window_s: float = Field(6, gt=0, le=600)
    idle_timeout_s: float = Field(3600, gt=0, le=30 * DAY_S, description="No arrivals and nothing in flight -> paused.")
    max_queue_wait_s: float = Field(600, gt=0, le=DAY_S,
                                    description="How long a request waits for a waking replica.")
    max_queued_requests: int = Field(1000, ge=1, le=100_000)
    max_price_per_hour: float | None = Field(None, gt=0, le=1_000_000,
                                             description="USD/hour cap on all replicas together.")
    drain_timeout_s: float = Field(120, ge=0, le=DAY_S, description="How long in-flight requests may finish on shrink.")

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        if (
            self.scale_down_below_latency_ms is not None
            and self.scale_down_below_latency_ms >= self.target_latency_p95_ms
        ):
            raise ValueError(
                f"scale_down_below_latency_ms ({self.scale_down_below_latency_ms:g}) must be below "
                f"target_latency_p95_ms ({self.target_latency_p95_ms:g})"
            )
        return self


class DeploymentSpec(ScalingSpec):
    """What the user declares: a model, a hardware profile and how its replicas scale.

    Each field says what changing it means (`_change`); unmarked fields (all of ScalingSpec) are live.
    """

    name: str | None = Field(
        None, max_length=63, description="Unique per tenant; usable as `model` in OpenAI calls.",
        json_schema_extra={**_change("identity"), "pattern": NAME_SCHEMA_PATTERN}
    )
    hf_model_id: PlainText(200, min_length=1) = Field(..., json_schema_extra=_change("identity"))
    task: Task = Field(Task.generate, json_schema_extra=_change("identity"))
    engine: Engine = Field(Engine.vllm, json_schema_extra=_change("identity"))
    engine_args: list[PlainText(MAX_ENGINE_ARG_LENGTH)] = Field(
        default_factory=list, max_length=MAX_ENGINE_ARGS, description="Extra flags for the engine server.",
        json_schema_extra=_change("replica")
    )
    hardware_profile: PlainText(64) = Field("gpu.a100", json_schema_extra={**_change("replica"),
                                                                           "enum": list(PROFILES)})
    gpus_per_replica: int = Field(
        1, ge=1, le=8, description="vLLM --tensor-parallel-size.", json_schema_extra=_change("replica")
    )
    max_model_len: int | None = Field(None, ge=16, le=1_048_576, json_schema_extra=_change("replica"))
    allow_spot: bool = False
    # Placement (providers/placement.py): live, a change applies to the replicas started from then on.
    providers: list[Target] = Field(
        default_factory=list, description="Ordered providers to place replicas on; empty: the control plane's "
        "first. Without cloudburst only the first is used.")
    cloudburst: bool = Field(False, description="When a provider is full, place the next replicas on the next one; "
                             "scale-down removes burst replicas first.")
    node_names: list[str] = Field(
        default_factory=list, max_length=100, description="Kubernetes nodes replicas may run on (on-prem "
        "pinning); empty: any node of the hardware profile.")
    instance_types: list[str] = Field(
        default_factory=list, max_length=20, description="EC2 instance types for AWS replicas, each holding the "
        "replica's GPUs; empty: the profile's smallest.")
    max_requests_per_replica: int | None = Field(
        None, ge=1, le=100_000, description="Requests in flight per ready replica the gateway lets through; "
        "beyond it a 429 with Retry-After, rather than a queue at the engines (none: no bound)."
    )
    # LoRA adapters (inferstack/lora.py): live, loaded and unloaded on the running replicas.
    adapters: list[AdapterSpec] = Field(
        default_factory=list, max_length=MAX_ADAPTERS, description="LoRA adapters served on this base model, "
        "each callable as `model` = `<deployment-name>:<adapter-name>`.")
    max_loras: int | None = Field(
        None, ge=1, le=MAX_ADAPTERS, description="vLLM --max-loras: adapters in one batch; none: the number of "
        "adapters. More adapters than this is refused.", json_schema_extra=_change("replica"))
    max_lora_rank: int | None = Field(
        None, description="vLLM --max-lora-rank; none: the highest stated adapter rank, at least 16.",
        json_schema_extra={**_change("replica"), "enum": list(LORA_RANKS)})
    hf_token: SecretStr | None = Field(
        None, max_length=MAX_TOKEN_LENGTH, description="Write-only: used to pull gated weights.",
        json_schema_extra=_change("replica")
    )

    @field_validator("engine_args")
    @classmethod
    def _no_secrets(cls, args: list[str]) -> list[str]:
        # engine_args are stored, printed and written to launch documents in clear.
        findings = secret_findings(args)
        if findings:
            raise ValueError(f"looks like a secret ({'; '.join(findings)}): engine_args are stored and shown in "
                             "clear; pass a Hugging Face token as hf_token, and never give replicas an API key")
        return args

    @field_validator("hf_token")
    @classmethod
    def _plain_token(cls, token: SecretStr | None) -> SecretStr | None:
        # Checked here rather than by type: the message must not echo the secret.
        if token is not None and control_character_problem(token.get_secret_value()):
            raise ValueError("must not contain control characters")
        return token

    @model_validator(mode="after")
    def _fits(self) -> DeploymentSpec:
        if self.name is not None and not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"name {self.name!r} must be lower-case letters, digits and '-', 1-63 characters, "
                "starting and ending with a letter or digit"
            )
        if self.name is not None and self.name.startswith("dep-"):
            raise ValueError(f"name {self.name!r} must not start with 'dep-' (reserved for deployment ids)")
        profile = PROFILES.get(self.hardware_profile)
        if profile is None:
            raise ValueError(
                f"hardware_profile {self.hardware_profile!r} is unknown; choose one of {', '.join(PROFILES)}"
            )
        if self.gpus_per_replica > profile.max_gpus_per_replica:
            raise ValueError(
                f"gpus_per_replica ({self.gpus_per_replica}) exceeds {profile.name}'s "
                f"{profile.max_gpus_per_replica} GPUs per machine"
            )
        catalogued = MODELS.get(self.hf_model_id)
        if catalogued is not None:
            problem = fit_problem(catalogued.size(), profile, self.gpus_per_replica)
            if problem:
                raise ValueError(f"hf_model_id: {problem}")
        holding = sorted({t for gpus, t in profile.aws_instance_types.items() if gpus >= self.gpus_per_replica})
        wrong = [t for t in self.instance_types if t not in holding]
        if wrong:
            raise ValueError(f"instance_types: {', '.join(wrong)} do not hold {self.gpus_per_replica} x {profile.gpu}; "
                             f"choose among {', '.join(holding) or 'none (no EC2 type holds them)'}")
        problem = self._adapter_problem()
        if problem:
            raise ValueError(problem)
        if self.max_price_per_hour is not None and self.max_price_per_hour < self.price_per_replica_hour:
            raise ValueError(
                f"max_price_per_hour ({self.max_price_per_hour:g}) is below the price of one replica "
                f"({self.price_per_replica_hour:g} USD/hour on {profile.name}): it could never run"
            )
        floor_price = self.min_replicas * self.price_per_replica_hour
        if self.max_price_per_hour is not None and floor_price > self.max_price_per_hour:
            raise ValueError(
                f"max_price_per_hour ({self.max_price_per_hour:g}) is below the cost of min_replicas: "
                f"{self.min_replicas} x {self.price_per_replica_hour:g} = {floor_price:g} USD/hour"
            )
        return self

    def _adapter_problem(self) -> str | None:
        names = [a.name for a in self.adapters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            return f"adapters: {', '.join(twice)} named more than once"
        if self.adapters and self.task is Task.embed:
            return "adapters: LoRA adapters are served by generate deployments, not embed ones"
        if self.max_lora_rank is not None and self.max_lora_rank not in LORA_RANKS:
            return f"max_lora_rank ({self.max_lora_rank}) must be one of {', '.join(map(str, LORA_RANKS))}"
        if self.max_loras is not None and len(self.adapters) > self.max_loras:
            return f"adapters: {len(self.adapters)} adapters exceed max_loras ({self.max_loras})"
        over = [f"{a.name} (rank {a.rank})" for a in self.adapters
                if a.rank is not None and self.max_lora_rank is not None and a.rank > self.max_lora_rank]
        if over:
            return f"adapters: {', '.join(over)} exceed max_lora_rank ({self.max_lora_rank})"
        return None

    @property
    def lora_limits(self) -> LoraLimits | None:
        """What the replicas' engine reserves for adapters; None: LoRA off (no adapter, no limit set)."""
        if not self.adapters and self.max_loras is None and self.max_lora_rank is None:
            return None
        return LoraLimits(max_loras=self.max_loras or max(1, len(self.adapters)),
                          max_lora_rank=self.max_lora_rank or needed_rank(self.adapters))

    @property
    def profile(self) -> HardwareProfile:
        return PROFILES[self.hardware_profile]

    @property
    def price_per_replica_hour(self) -> float:
        return PROFILES[self.hardware_profile].price_per_replica_hour(self.gpus_per_replica)

    def stored(self) -> dict[str, Any]:
        """The spec as JSON values, every field but the write-only token (defaults included): what the
        store keeps, `inferstack apply` and the Pulumi provider compare, and REST shows."""
        return self.model_dump(mode="json", exclude={TOKEN_FIELD})

    def public(self) -> dict[str, Any]:
        """The spec as shown to users: the stored fields and whether a token is set."""
        return self.stored() | {"hf_token_set": self.hf_token is not None}

    def with_changes(self, changes: dict[str, Any]) -> DeploymentSpec:
        """A new, re-validated spec; the token is kept unless `changes` sets it."""
        merged = self.model_dump(mode="python")
        merged[TOKEN_FIELD] = self.hf_token
        merged.update(changes)
        return DeploymentSpec.model_validate(merged)


TOKEN_FIELD = "hf_token"
"""The write-only field: stored apart, never shown, sent only when it is set or changes."""
SPEC_FIELDS = tuple(name for name in DeploymentSpec.model_fields if name != TOKEN_FIELD)
"""Every spec field but the token, in declaration order: the keys of `stored()`."""


def _fields_that_change(kind: FieldChange) -> frozenset[str]:
    return frozenset(
        name for name, info in DeploymentSpec.model_fields.items()
        if (info.json_schema_extra or {}).get("change", "live") == kind  # type: ignore[union-attr]
    )


IDENTITY_FIELDS = _fields_that_change("identity")
REPLICA_SHAPING_FIELDS = _fields_that_change("replica")
LIVE_FIELDS = _fields_that_change("live")


def needs_new_replicas(old: DeploymentSpec, new: DeploymentSpec) -> bool:
    """Whether running replicas cannot serve `new`: a replica-shaping field changed, LoRA was turned on
    (the first adapter, when max_loras is not set), or an adapter needs a higher rank than the replicas
    reserve. Adding or removing an adapter within those is live: it is loaded on the running replicas."""
    if any(getattr(old, name) != getattr(new, name) for name in REPLICA_SHAPING_FIELDS):
        return True
    before, after = old.lora_limits, new.lora_limits
    if after is None:
        return False
    return before is None or after.max_lora_rank > before.max_lora_rank


class _SpecPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    immediate_scale_down: bool = Field(False, description="Skip the stabilisation window once.")

    def changes(self) -> dict[str, Any]:
        """The fields the caller gave (an explicit null included), without the one-off flag."""
        return self.model_dump(exclude_unset=True, exclude={"immediate_scale_down"})


def _patchable(info: FieldInfo) -> tuple[Any, FieldInfo]:
    # The spec field's type and limits (so the OpenAPI document shows them), but optional: a PATCH names
    # only what it changes. An explicit null is accepted only where the spec takes one.
    patch = FieldInfo.merge_field_infos(info, default=None)
    patch.default_factory = None
    return info.annotation, patch


# Built from the spec's own fields so a new field is patchable the day it is added. The merged spec is
# checked again (`with_changes`) for the rules between fields, so an error names the same limit as on create.
DeploymentUpdate = create_model(
    "DeploymentUpdate",
    __base__=_SpecPatch,
    __doc__="A PATCH: any spec field but the identity ones, plus a one-off immediate scale-down.",
    **{name: _patchable(info) for name, info in DeploymentSpec.model_fields.items()
       if name not in IDENTITY_FIELDS},  # type: ignore[call-overload]
)


def error_fields(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Flatten pydantic errors into `{field, message}` pairs that name the field a user got wrong."""
    out = []
    for item in errors:
        loc = [str(p) for p in item["loc"] if p != "body"]
        message = str(item["msg"]).removeprefix("Value error, ")
        field = ".".join(loc) or _field_from_message(message)
        # "hf_model_id: needs ..." -> "needs ...": the field is said once, by whoever prints it.
        out.append({"field": field, "message": message.removeprefix(f"{field}: ") if field else message})
    return out


def _field_from_message(message: str) -> str:
    # Model-level checks start their message with the field they are about.
    first = message.split(" ", 1)[0].rstrip(":")
    return first if first in DeploymentSpec.model_fields else ""


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line per error; the field leads unless the message already opens with it
    ("min_replicas (3) must not exceed max_replicas (1)")."""
    return "; ".join(e["message"] if not e["field"] or e["message"].startswith(e["field"])
                     else f"{e['field']}: {e['message']}" for e in error_fields(errors))

