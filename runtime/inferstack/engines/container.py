"""What a replica runs in a container on a cloud target (Kubernetes pod, EC2 boot script). Pure.

The command line comes from `launch.plan_launch`, the same function the local provider uses, so a
flag means the same thing on every target. Secrets are left out: each target adds them from its own
secret store (a Secret reference, a fetch at boot), never as a literal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from inferstack.engines.launch import plan_launch
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


@dataclass(frozen=True)
class ReplicaContainer:
    image: str
    command: list[str]
    env: dict[str, str]
    """Plain (non-secret) variables; the HF token is added by each target from its secret store."""


def replica_container(spec: DeploymentSpec, deployment_id: str, name: str, vllm_image: str,
                      runtime_image: str, port: int = REPLICA_PORT) -> ReplicaContainer:
    """The container of one replica: the official vLLM image with the spec's flags, or for `sim` the
    runtime image running the built-in simulator. Served under the deployment's name and id."""
    launch = plan_launch(spec.model_copy(update={"hf_token": None}), deployment_id, name, port,
                         replica_api_key="", vllm_python=CONTAINER_PYTHON, host="0.0.0.0")
    command = [CONTAINER_PYTHON, *launch.argv[1:]]  # argv[0] is this machine's interpreter for sim
    env = {k: v for k, v in launch.env.items() if k not in SECRET_ENV}
    image = runtime_image if spec.engine is Engine.sim else vllm_image
    return ReplicaContainer(image=image, command=command, env=env)


def launch_document(spec: DeploymentSpec, deployment_id: str, name: str, vllm_image: str, runtime_image: str) -> str:
    """What an EC2 replica runs, as the JSON its boot script reads from SSM: model, served names, port
    and flags, and no secret (the Hugging Face token is fetched from Secrets Manager at boot)."""
    container = replica_container(spec, deployment_id, name, vllm_image, runtime_image)
    return json.dumps({"deployment": name, "deployment_id": deployment_id, "image": container.image,
                       "command": container.command, "env": container.env, "port": REPLICA_PORT,
                       "gpus": spec.gpus_per_replica}, sort_keys=True)
