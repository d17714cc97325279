from __future__ import annotations

import pytest

from inferstack.engines.launch import EngineUnavailable, plan_launch, replica_environment
from inferstack.spec import DeploymentSpec


def spec(**fields: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"hf_model_id": "Qwen/Qwen2.5-7B-Instruct", "hardware_profile": "gpu.h100",
                                          **fields})


def test_vllm_gets_the_flags_from_the_spec() -> None:
    plan = plan_launch(spec(gpus_per_replica=2, max_model_len=8192, engine_args=["--enable-prefix-caching"]),
                       "dep-1", "chat", 9001, "replica-key", "/opt/vllm/bin/python")
    argv = plan.argv
    assert argv[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == "Qwen/Qwen2.5-7B-Instruct"
    names = argv.index("--served-model-name")
    assert argv[names + 1 : names + 3] == ["chat", "dep-1"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--max-model-len") + 1] == "8192"
    assert argv[argv.index("--port") + 1] == "9001" and argv[-1] == "--enable-prefix-caching"


def test_secrets_travel_in_the_environment_not_the_command_line() -> None:
    plan = plan_launch(spec(hf_token="hf_abc"), "dep-1", "dep-1", 9001, "replica-key", "/py")
    assert "replica-key" not in plan.argv and "hf_abc" not in " ".join(plan.argv)
    assert plan.env["VLLM_API_KEY"] == "replica-key" and plan.env["HF_TOKEN"] == "hf_abc"
    names = plan.argv.index("--served-model-name")
    assert plan.argv[names + 2] == "--host"  # a deployment without a name is served by id only


def test_embedding_deployments_run_vllm_as_a_pooling_runner() -> None:
    plan = plan_launch(spec(hf_model_id="BAAI/bge-large-en-v1.5", task="embed"), "dep-1", "e", 1, "k", "/py")
    assert plan.argv[plan.argv.index("--runner") + 1] == "pooling"


def test_vllm_without_an_environment_says_how_to_get_one() -> None:
    with pytest.raises(EngineUnavailable, match="INFERSTACK_VLLM_PYTHON"):
        plan_launch(spec(), "dep-1", "x", 1, "k", None)


def test_sim_runs_the_built_in_server() -> None:
    plan = plan_launch(spec(engine="sim", hardware_profile="cpu"), "dep-1", "x", 5, "k", None)
    assert plan.argv[1:3] == ["-m", "inferstack.engines.sim"]


def test_a_replica_inherits_only_the_allow_listed_environment_and_its_own_secrets() -> None:
    control_plane = {"PATH": "/usr/bin", "HOME": "/home/me", "LC_ALL": "C.UTF-8", "HF_HOME": "/cache/hf",
                     "VLLM_CPU_OMP_THREADS_BIND": "0-1", "CUDA_VISIBLE_DEVICES": "0",
                     "INFERSTACK_DATABASE_URL": "postgresql://u:pw@db/x", "INFERSTACK_BOOTSTRAP_API_KEY": "isk-boot",
                     "AWS_SECRET_ACCESS_KEY": "aws-secret", "HF_TOKEN": "hf_operator", "GITHUB_TOKEN": "ghp_x",
                     "VLLM_API_KEY": "the-control-plane-s-own"}
    plan = plan_launch(spec(hf_token="hf_deployment"), "dep-1", "dep-1", 9001, "replica-key", "/py")
    env = replica_environment(control_plane, plan)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/me", "LC_ALL": "C.UTF-8", "HF_HOME": "/cache/hf",
                   "VLLM_CPU_OMP_THREADS_BIND": "0-1", "CUDA_VISIBLE_DEVICES": "0",
                   "VLLM_API_KEY": "replica-key", "HF_TOKEN": "hf_deployment"}
