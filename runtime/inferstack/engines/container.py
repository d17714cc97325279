"""What a replica runs in a container on a cloud target (Kubernetes pod, EC2 boot script). Pure.

The command line comes from `launch.plan_launch`, the same function the local provider uses, so a
flag means the same thing on every target. Secrets are left out: each target adds them from its own
secret store (a Secret reference, a fetch at boot), never as a literal.

A cloud replica cannot read the control plane's adapter cache: its S3 adapters are fetched at its launch,
before the engine starts, by the runtime image (`fetch_command`) into `ADAPTERS_DIR`, where the engine
reads them (a Kubernetes init container into an emptyDir; the EC2 boot script into a host directory).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from inferstack.engines.launch import plan_launch
from inferstack.lora import S3_SCHEME
from inferstack.spec import DeploymentSpec, Engine

REPLICA_PORT = 8000
"""The port every replica (vLLM or sim) listens on inside its pod or instance."""
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
"""The official vLLM image replicas run unless the platform settings name another."""
DEFAULT_RUNTIME_IMAGE = "ghcr.io/inferstack/inferstack:0.1.0"
"""The runtime (controller) image; `sim` replicas run the simulator from it."""
CONTAINER_PYTHON = "python3"
TOKEN_ENV = "HF_TOKEN"
SECRET_ENV = frozenset({TOKEN_ENV, "VLLM_API_KEY"})
"""Variables that only ever come from a secret store; never written into a manifest or user data."""
ADAPTERS_DIR = "/adapters"
"""Where a cloud replica's S3 adapters are fetched at launch, one directory per adapter name."""


@dataclass(frozen=True)
class ReplicaContainer:
    image: str
    command: list[str]
    env: dict[str, str]
    """Plain (non-secret) variables; the HF token is added by each target from its secret store."""
    fetch_command: list[str] | None = None
    """Run in the runtime image before the engine starts, when the spec has S3 adapters: fetches each
    into `ADAPTERS_DIR`/<name>, with the replica's own AWS credentials (instance role, pod identity)."""


def replica_container(spec: DeploymentSpec, deployment_id: str, name: str, vllm_image: str,
                      runtime_image: str, port: int = REPLICA_PORT) -> ReplicaContainer:
    """The container of one replica: the official vLLM image with the spec's flags, or for `sim` the
    runtime image running the built-in simulator. Served under the deployment's name and id."""
    fetched = {source: f"{ADAPTERS_DIR}/{adapter}" for adapter, source in _s3_adapters(spec).items()}
    launch = plan_launch(spec.model_copy(update={"hf_token": None}), deployment_id, name, port,
                         replica_api_key="", vllm_python=CONTAINER_PYTHON, host="0.0.0.0", fetched=fetched)
    command = [CONTAINER_PYTHON, *launch.argv[1:]]  # argv[0] is this machine's interpreter for sim
    env = {k: v for k, v in launch.env.items() if k not in SECRET_ENV}
    image = runtime_image if spec.engine is Engine.sim else vllm_image
    return ReplicaContainer(image=image, command=command, env=env, fetch_command=fetch_command(spec))


def _s3_adapters(spec: DeploymentSpec) -> dict[str, str]:
    return {a.name: a.source for a in spec.adapters if a.source.startswith(S3_SCHEME)}


def fetch_command(spec: DeploymentSpec) -> list[str] | None:
    """What the runtime image runs before a cloud replica's engine starts: each S3 adapter fetched into
    `ADAPTERS_DIR`/<name>. None without S3 adapters."""
    s3 = _s3_adapters(spec)
    if not s3:
        return None
    return [CONTAINER_PYTHON, "-m", "inferstack", "fetch-adapters", "--into", ADAPTERS_DIR,
            *(f"{adapter}={source}" for adapter, source in sorted(s3.items()))]


def launch_document(spec: DeploymentSpec, deployment_id: str, name: str, vllm_image: str, runtime_image: str) -> str:
    """What an EC2 replica runs, as the JSON its boot script reads from SSM: model, served names, port
    and flags, and no secret (the Hugging Face token is fetched from Secrets Manager at boot). With S3
    adapters, the command that fetches them first (in `runtime_image`) and where they go."""
    container = replica_container(spec, deployment_id, name, vllm_image, runtime_image)
    adapters = ({"fetch_image": runtime_image, "fetch_command": container.fetch_command, "adapters_dir": ADAPTERS_DIR}
                if container.fetch_command else {})
    return json.dumps({"deployment": name, "deployment_id": deployment_id, "image": container.image,
                       "command": container.command, "env": container.env, "port": REPLICA_PORT,
                       "gpus": spec.gpus_per_replica, **adapters}, sort_keys=True)
