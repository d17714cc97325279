"""The spec's field classes, derived from its field metadata, against what a change of each field does."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from inferstack.declared.plan import Action, plan
from inferstack.engines.launch import plan_launch
from inferstack.spec import (
    IDENTITY_FIELDS,
    LIVE_FIELDS,
    REPLICA_SHAPING_FIELDS,
    SPEC_FIELDS,
    TOKEN_FIELD,
    DeploymentSpec,
    DeploymentUpdate,
    needs_new_replicas,
)

BASE = DeploymentSpec(name="chat", hf_model_id="m/chat", engine="vllm", hardware_profile="gpu.l4")

# One other valid value for every field a PATCH may change. A new spec field must be added here,
# which makes its author say whether changing it needs new replicas.
OTHER_VALUE: dict[str, Any] = {
    "hardware_profile": "cpu", "gpus_per_replica": 2, "engine_args": ["--enforce-eager"], "max_model_len": 512,
    TOKEN_FIELD: "hf_another", "allow_spot": True, "min_replicas": 0, "max_replicas": 3, "target_rps": 5.0,
    "target_latency_p95_ms": 1000, "scale_down_below_latency_ms": 500, "stabilisation_window": 60,
    "scale_up_cooldown_s": 5, "metrics_window_s": 30, "panic_window_s": 3, "idle_timeout_s": 100,
    "max_queue_wait_s": 10, "max_queued_requests": 10, "max_price_per_hour": 100.0, "drain_timeout_s": 5,
    "max_requests_per_replica": 64,
    "providers": ["kubernetes", "aws"], "cloudburst": True, "node_names": ["gpu-node-1"],
    "instance_types": ["g6.12xlarge"], "adapters": [{"name": "sql", "source": "org/sql-lora"}], "max_loras": 2,
    "max_lora_rank": 32,
}
IDENTITY_VALUE: dict[str, Any] = {"name": "chat2", "hf_model_id": "m/other", "engine": "sim", "task": "embed"}


def launch_of(spec: DeploymentSpec) -> tuple[list[str], dict[str, str]]:
    launch = plan_launch(spec, "dep-1", "chat", 8000, replica_api_key="k", vllm_python="python3")
    return launch.argv, launch.env


def test_the_classes_partition_the_spec_as_the_platform_expects() -> None:
    assert {"name", "hf_model_id", "task", "engine"} == IDENTITY_FIELDS
    assert {"hardware_profile", "gpus_per_replica", "engine_args", "max_model_len", "max_loras", "max_lora_rank",
            TOKEN_FIELD} == REPLICA_SHAPING_FIELDS
    assert set(DeploymentSpec.model_fields) == IDENTITY_FIELDS | REPLICA_SHAPING_FIELDS | LIVE_FIELDS
    assert not (IDENTITY_FIELDS & REPLICA_SHAPING_FIELDS or IDENTITY_FIELDS & LIVE_FIELDS
                or REPLICA_SHAPING_FIELDS & LIVE_FIELDS)
    assert set(SPEC_FIELDS) == set(DeploymentSpec.model_fields) - {TOKEN_FIELD} == set(BASE.stored())
    assert set(OTHER_VALUE) == REPLICA_SHAPING_FIELDS | LIVE_FIELDS


@pytest.mark.parametrize("field", sorted(REPLICA_SHAPING_FIELDS | LIVE_FIELDS - {"adapters"}))
def test_a_field_needs_new_replicas_exactly_when_it_changes_what_a_replica_runs(field: str) -> None:
    changed = BASE.with_changes(DeploymentUpdate(**{field: OTHER_VALUE[field]}).changes())
    assert getattr(changed, field) != getattr(BASE, field)
    assert (launch_of(changed) != launch_of(BASE)) == (field in REPLICA_SHAPING_FIELDS)
    assert needs_new_replicas(BASE, changed) == (field in REPLICA_SHAPING_FIELDS)


def test_adapters_are_live_once_replicas_run_with_lora() -> None:
    """A new replica starts with every adapter (so the launch changes), but a running one loads it at run
    time: only the first adapter (LoRA off until then) or a higher rank needs new replicas."""
    one = BASE.with_changes({"adapters": [{"name": "sql", "source": "org/sql-lora"}]})
    two = one.with_changes({"adapters": [*one.stored()["adapters"], {"name": "law", "source": "/adapters/law"}]})
    argv, env = launch_of(two)
    assert argv[argv.index("--lora-modules") + 1:argv.index("--lora-modules") + 3] == [
        "chat:sql=org/sql-lora", "chat:law=/adapters/law"]
    assert argv[argv.index("--max-lora-rank") + 1] == "16" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert needs_new_replicas(BASE, one) and not needs_new_replicas(one, two) and not needs_new_replicas(two, one)
    assert not needs_new_replicas(one, BASE)  # a replica with LoRA on serves the base model as well
    wide = two.with_changes({"adapters": [*two.stored()["adapters"], {"name": "w", "source": "o/w", "rank": 64}]})
    assert needs_new_replicas(two, wide) and launch_of(wide)[0][launch_of(wide)[0].index("--max-lora-rank") + 1] == "64"
    preset = BASE.with_changes({"max_loras": 4})
    assert not needs_new_replicas(preset, preset.with_changes({"adapters": one.stored()["adapters"]}))


@pytest.mark.parametrize("field", sorted(IDENTITY_FIELDS))
def test_an_identity_field_is_refused_in_a_patch_and_replaced_by_declared_tools(field: str) -> None:
    with pytest.raises(ValidationError):
        DeploymentUpdate(**{field: IDENTITY_VALUE[field]})
    declared = DeploymentSpec.model_validate({**BASE.stored(), field: IDENTITY_VALUE[field]})
    live = {"name": "chat", "deployment_id": "dep-1", "spec": BASE.public()}
    actions = sorted(change.action for change in plan([declared], [live]).changes)
    # Deployments are matched by name: a new name is a new deployment, and the old one goes.
    assert actions == ([Action.create, Action.delete] if field == "name" else [Action.replace])


@pytest.mark.parametrize("field", sorted(set(SPEC_FIELDS) - IDENTITY_FIELDS))
def test_every_other_field_is_an_update_in_place(field: str) -> None:
    declared = BASE.with_changes({field: OTHER_VALUE[field]})
    live = {"name": "chat", "deployment_id": "dep-1", "spec": BASE.public()}
    (change,) = plan([declared], [live]).changes
    assert change.action is Action.update and set(change.fields) == {field}


def test_the_stored_form_never_holds_the_token() -> None:
    spec = BASE.with_changes({TOKEN_FIELD: "hf_secret_value_123"})
    assert TOKEN_FIELD not in spec.stored() and "hf_secret_value_123" not in str(spec.stored())
    assert spec.public() == spec.stored() | {"hf_token_set": True}
