"""The committed stacks, built by the Pulumi program under mocks, pass every rule with policies/config.json;
and a stack that breaks the rules is caught by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "policies"))
sys.path.insert(0, str(ROOT / "tests/infra"))

from program_harness import run_program  # noqa: E402

import rules  # noqa: E402

CONFIG = rules.PolicyConfig.from_mapping({k: v for s in json.loads((ROOT / "policies/config.json").read_text()).values()
                                          for k, v in s.items()})


def unwrap(value: Any) -> Any:
    """Policies see secrets as their values (the engine unwraps them)."""
    if isinstance(value, dict):
        if set(value) == {"$secret"}:
            return unwrap(value["$secret"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def as_policy_resources(stack_file: str, tmp: Path, *options: str) -> list[rules.Resource]:
    program = run_program(stack_file, *options, tmp=tmp)
    assert program.error is None, program.error
    return [rules.Resource(r["type"], r["name"], unwrap(r["inputs"]), tuple(r["additional_secret_outputs"]))
            for r in program.resources if r["custom"]]


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_committed_stack_passes_every_policy(stack: str, tmp_path: Path) -> None:
    resources = as_policy_resources(f"stacks/Pulumi.{stack}.yaml", tmp_path)
    assert rules.check_all(resources, stack, CONFIG) == {}


def test_dev_stack_with_prod_habits_is_caught(tmp_path: Path) -> None:
    greedy = [{"name": "chat", "hf_model_id": "meta-llama/Llama-3.1-8B-Instruct", "hardware_profile": "gpu.h100",
               "gpus_per_replica": 8, "min_replicas": 1, "max_replicas": 20, "stabilisation_window": 10,
               "allow_spot": True}]
    resources = as_policy_resources("stacks/Pulumi.dev.yaml", tmp_path, "--set",
                                    f"inferstack:deployments={json.dumps(greedy)}")
    found = rules.check_all(resources, "dev", CONFIG)
    assert set(found) == {"allowed-hardware-profiles", "max-replicas-ceiling", "scale-to-zero-outside-prod",
                          "stabilisation-window-floor", "spot-only-where-allowed", "monthly-budget"}
