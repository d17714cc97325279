"""Replica pods: the manifests the provider sends validate against the Kubernetes API's schemas, fit
the profile's smallest machine, pin to named nodes; and what a pod's status says is read right."""

from __future__ import annotations

import kubernetes_validate
import pytest

from inferstack.hardware import PROFILES
from inferstack.providers.kubernetes_pods import (
    PodSettings,
    node_affinity,
    pod_failure,
    read_pod,
    replica_deployment,
    replica_secret,
    resources,
    scheduling,
)
from inferstack.spec import DeploymentSpec

KUBERNETES_VERSION = "1.37.0"


def pods(profile: str, **extra: object) -> PodSettings:
    return PodSettings(namespace="inferstack", vllm_image="vllm/vllm-openai:v0.11.0",
                       runtime_image="ghcr.io/inferstack/inferstack:0.1.0", placement=scheduling([profile])[profile],
                       **extra)  # type: ignore[arg-type]


SPECS = [
    DeploymentSpec(name="chat", hf_model_id="meta-llama/Llama-3.1-8B-Instruct", hardware_profile="gpu.l4"),
    DeploymentSpec(name="big", hf_model_id="meta-llama/Llama-3.1-70B-Instruct", hardware_profile="gpu.a100",
                   gpus_per_replica=8, node_names=["gpu-node-7", "gpu-node-8"], hf_token="hf_x"),
    DeploymentSpec(name="smoke", hf_model_id="inferstack/sim-chat", engine="sim", hardware_profile="cpu"),
    DeploymentSpec(name="tuned", hf_model_id="meta-llama/Llama-3.1-8B-Instruct", hardware_profile="gpu.l4",
                   adapters=[{"name": "sql", "source": "s3://adapters/team/sql"}, {"name": "hub", "source": "org/hub"},
                             {"name": "legal", "source": "s3://adapters/legal"}]),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_replica_manifests_validate_strictly(spec: DeploymentSpec) -> None:
    settings = pods(spec.hardware_profile, model_cache_claim="inferstack-model-cache", hf_token_secret="hf")
    deployment = replica_deployment(spec, "dep-1", spec.name or "", settings)
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    kubernetes_validate.validate(replica_secret(spec.name or "", "inferstack", "key", spec), KUBERNETES_VERSION,
                                 strict=True)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_names = {e["name"] for e in env if "valueFrom" in e}
    assert {"VLLM_API_KEY", "HF_TOKEN"} <= secret_names  # from Secrets only
    assert not any(e.get("value") in ("key", "hf_x") for e in env)


def test_s3_adapters_are_fetched_by_an_init_container_into_a_volume_the_engine_reads() -> None:
    pod = replica_deployment(SPECS[3], "dep-1", "tuned", pods("gpu.l4"))["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == "ghcr.io/inferstack/inferstack:0.1.0"
    assert init["command"] == ["python3", "-m", "inferstack", "fetch-adapters", "--into", "/adapters",
                               "legal=s3://adapters/legal", "sql=s3://adapters/team/sql"]
    assert init["volumeMounts"] == [{"name": "adapters", "mountPath": "/adapters"}]
    assert {"name": "adapters", "emptyDir": {}} in pod["volumes"]
    engine = pod["containers"][0]
    assert {"name": "adapters", "mountPath": "/adapters", "readOnly": True} in engine["volumeMounts"]
    modules = engine["command"][engine["command"].index("--lora-modules") + 1:][:3]
    assert modules == ["tuned:sql=/adapters/sql", "tuned:hub=org/hub", "tuned:legal=/adapters/legal"]
    plain = replica_deployment(SPECS[0], "dep-1", "chat", pods("gpu.l4"))["spec"]["template"]["spec"]
    assert "initContainers" not in plain and "adapters" not in {v["name"] for v in plain["volumes"]}


def test_a_one_gpu_pod_fits_the_profiles_smallest_machine() -> None:
    # The old sizing asked 4 CPUs and 32 GiB per GPU: no g6.xlarge (4 vCPU, 16 GiB) could hold it.
    l4 = resources(SPECS[0])
    assert l4 == {"requests": {"cpu": "3", "memory": "12Gi", "nvidia.com/gpu": "1"},
                  "limits": {"memory": "12Gi", "nvidia.com/gpu": "1"}}
    for profile in PROFILES.values():
        node = profile.smallest_node
        for gpus in (1, node.gpus or 1):
            cpus, memory = profile.pod_size(gpus)
            share = gpus / node.gpus if node.gpus else 1
            assert cpus < node.cpus * share and memory < node.memory_gib * share, (profile.name, gpus)


def test_named_nodes_become_a_required_node_affinity() -> None:
    big = replica_deployment(SPECS[1], "dep-1", "big", pods("gpu.a100"))["spec"]["template"]["spec"]
    terms = big["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                            "values": ["gpu-node-7", "gpu-node-8"]}]}]
    assert big["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert node_affinity([]) is None


def pod(status: dict, containers: list[dict] | None = None) -> dict:
    return {"metadata": {"name": "p", "labels": {"inferstack.io/deployment": "chat"}},
            "spec": {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}]},
            "status": {**status, "containerStatuses": containers or []}}


def test_a_pods_address_readiness_and_scheduling_are_read_from_its_status() -> None:
    running = read_pod(pod({"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]}))
    assert (running.address, running.ready, running.unschedulable) == ("http://10.0.0.7:8000", True, None)
    pending = read_pod(pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: gpu"}]}))
    assert (pending.address, pending.unschedulable) == (None, "0/3 nodes: gpu")


@pytest.mark.parametrize(("status", "containers", "restarts_at_claim", "reason"), [
    ({"phase": "Running"}, [{"restartCount": 1, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}],
     0, "OOMKilled (exit code 137)"),
    ({"phase": "Running"}, [{"restartCount": 1, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}],
     1, None),  # the restart happened before this replica claimed the pod
    ({"phase": "Pending"}, [{"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                      "message": "no such image"}}}],
     0, "ImagePullBackOff: no such image"),
    ({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, [], 0,
     "pod failed (Evicted): low on memory"),
    ({"phase": "Running"}, [{"restartCount": 0, "state": {"running": {}}}], 0, None),
])
def test_a_claimed_pods_failure_carries_its_reason(status: dict, containers: list[dict], restarts_at_claim: int,
                                                   reason: str | None) -> None:
    assert pod_failure(read_pod(pod(status, containers)), restarts_at_claim) == reason
