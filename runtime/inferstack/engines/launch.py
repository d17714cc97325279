"""What a replica runs: the command line and environment of each engine, derived from the spec.

Pure: no processes are started here. The local provider runs the command; the Kubernetes and AWS
targets put the same flags into a pod spec or user data.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from pydantic import BaseModel

from inferstack.lora import adapter_model, engine_path
from inferstack.settings import Env
from inferstack.spec import DeploymentSpec, Engine, Task


class LaunchPlan(BaseModel):
    argv: list[str]
    # Secrets travel in the environment, not argv: argv is readable by every user on the host.
    env: dict[str, str]


class EngineUnavailable(Exception):
    pass


# What a local replica inherits from the control plane's environment: what an engine and its libraries
# need to find programs, caches and devices. Nothing else: the control plane's own settings and
# credentials (INFERSTACK_*, the database URL, a bootstrap key, AWS_*) must not be readable in
# /proc/<engine>/environ. The replica's own secrets come from the plan (`LaunchPlan.env`).
INHERITED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "TORCHINDUCTOR_CACHE_DIR",
})
INHERITED_PREFIXES = ("LC_", "VLLM_")


def replica_environment(inherited: Mapping[str, str], plan: LaunchPlan) -> dict[str, str]:
    """The allow-listed part of `inherited`, then the plan's own variables."""
    kept = {k: v for k, v in inherited.items() if k in INHERITED_ENV or k.startswith(INHERITED_PREFIXES)}
    return {**kept, **plan.env}


def served_names(deployment_id: str, name: str) -> list[str]:
    """A replica answers to the deployment's name and id, so the gateway never rewrites bodies.
    The name comes first: vLLM reports the first served name as `model` in its answers."""
    return [deployment_id] if name == deployment_id else [name, deployment_id]


RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
"""Lets the controller load and unload adapters on a running replica (`/v1/load_lora_adapter`)."""


def lora_flags(spec: DeploymentSpec, name: str, fetched: Mapping[str, str]) -> list[str]:
    """LoRA on, its limits, and the spec's adapters loaded at start, each served as `<name>:<adapter>`
    from what `lora.engine_path` gives the engine (`fetched`: the directory of each S3 adapter).
    The same flags for vLLM and the sim engine, which imitates them."""
    limits = spec.lora_limits
    if limits is None:
        return []
    flags = ["--enable-lora", "--max-loras", str(limits.max_loras), "--max-lora-rank", str(limits.max_lora_rank)]
    if spec.adapters:
        flags += ["--lora-modules", *(f"{adapter_model(name, a.name)}={engine_path(a.source, fetched)}"
                                     for a in spec.adapters)]
    return flags


def vllm_flags(spec: DeploymentSpec, names: list[str], port: int, host: str, fetched: Mapping[str, str]) -> list[str]:
    """The vLLM OpenAI server flags for a spec; shared by every target."""
    flags = ["--model", spec.hf_model_id, "--served-model-name", *names, "--host", host, "--port", str(port),
             "--tensor-parallel-size", str(spec.gpus_per_replica)]
    if spec.max_model_len:
        flags += ["--max-model-len", str(spec.max_model_len)]
    if spec.task is Task.embed:
        flags += ["--runner", "pooling"]
    return flags + lora_flags(spec, names[0], fetched) + spec.engine_args


def plan_launch(
    spec: DeploymentSpec,
    deployment_id: str,
    name: str,
    port: int,
    replica_api_key: str,
    vllm_python: str | None,
    host: str = "127.0.0.1",
    fetched: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """`fetched`: where each of the spec's S3 adapters was fetched to, by source."""
    fetched = fetched or {}
    names = served_names(deployment_id, name)
    env = {"VLLM_API_KEY": replica_api_key}
    if spec.lora_limits is not None:
        env[RUNTIME_LORA_ENV] = "True"
    if spec.hf_token is not None:
        env["HF_TOKEN"] = spec.hf_token.get_secret_value()
    if spec.engine is Engine.sim:
        argv = [sys.executable, "-m", "inferstack.engines.sim", "--host", host, "--port", str(port),
                "--served-model-name", *names, "--task", spec.task.value]
        if spec.max_model_len:
            argv += ["--max-model-len", str(spec.max_model_len)]
        return LaunchPlan(argv=argv + lora_flags(spec, names[0], fetched) + spec.engine_args, env=env)
    if not vllm_python:
        raise EngineUnavailable(
            f"engine 'vllm' needs a Python environment with vLLM: set {Env.VLLM_PYTHON} "
            "(`bash .ci/setup-vllm` builds a CPU one and prints its path)"
        )
    if spec.hardware_profile == "cpu":
        # A local CPU replica is for trying things: a 1 GiB KV cache (without a size vLLM reserves 92% of
        # the memory node and fails), and the model in the engine process (one Python start-up fewer:
        # ~15 s instead of ~30 s to healthy on 2 cores, measured with the tiny test model).
        env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    argv = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", *vllm_flags(spec, names, port, host, fetched)]
    return LaunchPlan(argv=argv, env=env)
