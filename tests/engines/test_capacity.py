"""engine_capacity: the per-replica limit admission applies, read from the engine's own flag."""

from __future__ import annotations

from typing import Any

import pytest

from inferstack.engines.capacity import SIM_DEFAULT_MAX_CONCURRENCY, VLLM_DEFAULT_MAX_NUM_SEQS, engine_capacity
from inferstack.engines.sim.config import SimConfig
from inferstack.spec import DeploymentSpec


def spec(**fields: Any) -> DeploymentSpec:
    return DeploymentSpec(**{"hf_model_id": "org/m", "hardware_profile": "gpu.l4", **fields})


@pytest.mark.parametrize(("fields", "expected"), [
    ({"engine": "vllm"}, VLLM_DEFAULT_MAX_NUM_SEQS),
    ({"engine": "vllm", "engine_args": ["--max-num-seqs", "32"]}, 32),
    ({"engine": "vllm", "engine_args": ["--max-num-seqs=48", "--enforce-eager"]}, 48),
    ({"engine": "vllm", "engine_args": ["--max-concurrency", "4"]}, VLLM_DEFAULT_MAX_NUM_SEQS),  # the sim's flag
    ({"engine": "vllm", "engine_args": ["--max-num-seqs", "lots"]}, VLLM_DEFAULT_MAX_NUM_SEQS),
    ({"engine": "sim"}, SIM_DEFAULT_MAX_CONCURRENCY),
    ({"engine": "sim", "engine_args": ["--max-concurrency", "2"]}, 2),
])
def test_capacity_is_the_engines_own_sequence_limit(fields: dict[str, Any], expected: int) -> None:
    assert engine_capacity(spec(**fields)) == expected


def test_the_sim_default_is_the_sim_engines() -> None:
    assert SimConfig(served_model_names=("m",)).max_concurrency == SIM_DEFAULT_MAX_CONCURRENCY
