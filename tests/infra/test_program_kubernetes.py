"""The dev stack (Kubernetes), as a reviewer reads its `pulumi preview`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from program_harness import ROOT, Program

from inferstack.declared.stackfile import load_stack_file
from inferstack.hardware import PROFILES

DEV = load_stack_file(ROOT / "stacks/Pulumi.dev.yaml")
SPECS = {d.name: d for d in DEV.deployments}


def replica_deployments(dev: Program) -> dict[str, dict]:
    found = {}
    for r in dev.of_type("kubernetes:apps/v1:Deployment"):
        labels = r["inputs"]["metadata"].get("labels", {})
        if labels.get("inferstack.io/role") == "replica":
            found[labels["inferstack.io/deployment"]] = r
    return found


def test_one_replica_deployment_per_declared_deployment_with_replicas_left_to_the_controller(dev: Program) -> None:
    replicas = replica_deployments(dev)
    assert sorted(replicas) == sorted(SPECS)
    for name, resource in replicas.items():
        assert resource["ignore_changes"] == ["spec.replicas"]
        assert resource["inputs"]["spec"]["replicas"] == SPECS[name].min_replicas  # the first count only
        assert resource["inputs"]["metadata"]["name"] == f"replicas-{name}"
        assert resource["inputs"]["metadata"]["namespace"] == "inferstack-dev"


def test_pod_spec_carries_the_model_flags_and_gpu_scheduling_of_its_profile(dev: Program) -> None:
    chat = replica_deployments(dev)["chat"]["inputs"]["spec"]["template"]["spec"]
    container = chat["containers"][0]
    spec = SPECS["chat"]
    assert container["image"] == DEV.platform.vllm_image
    command = container["command"]
    assert command[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == spec.hf_model_id
    assert "chat" in command[command.index("--served-model-name") + 1:command.index("--host")]
    assert command[command.index("--max-model-len") + 1] == "8192"
    assert command[command.index("--tensor-parallel-size") + 1] == "1"
    assert command[-3:] == ["--gpu-memory-utilization", "0.90", "--enable-prefix-caching"]
    assert chat["nodeSelector"] == {"nvidia.com/gpu.product": PROFILES["gpu.l4"].k8s_gpu_product}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in chat["tolerations"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "inferstack-model-cache"}} in chat["volumes"]


def test_embedding_and_sim_deployments_get_their_own_engine(dev: Program) -> None:
    replicas = replica_deployments(dev)
    embed = replicas["embed"]["inputs"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert embed[embed.index("--runner") + 1] == "pooling"
    smoke = replicas["smoke"]["inputs"]["spec"]["template"]["spec"]
    assert smoke["containers"][0]["image"] == DEV.platform.image
    assert smoke["containers"][0]["command"][:3] == ["python3", "-m", "inferstack.engines.sim"]
    assert "nodeSelector" not in smoke and "nvidia.com/gpu" not in json.dumps(smoke["containers"][0]["resources"])


def test_hf_token_is_a_secret_object_read_by_reference_only(dev: Program) -> None:
    secret = dev.named("inferstack-dev-hf-token")
    assert secret["inputs"]["stringData"] == {"$secret": {"token": dev.secrets["hf_token"]}}
    for resource in replica_deployments(dev).values():
        env = resource["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]
        token = [e for e in env if e["name"] == "HF_TOKEN"]
        assert token == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "inferstack-hf-token",
                                                                             "key": "token"}}}]


def test_controller_rbac_is_limited_to_what_the_provider_calls_in_its_namespace(dev: Program) -> None:
    assert dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole") == []
    assert dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding") == []
    (role,) = dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    assert role["inputs"]["metadata"]["namespace"] == "inferstack-dev"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["inputs"]["rules"]}
    # That these are all the provider needs is tests/infra/test_kubernetes_role.py's to show.
    assert rules == {
        (("apps",), ("deployments",)): {"get", "list", "create", "delete"},  # delete: a deleted deployment's
        (("apps",), ("deployments/scale",)): {"get", "patch"},
        (("",), ("pods",)): {"list", "patch"},  # pods go with their Deployment: never deleted one by one
        (("",), ("secrets",)): {"get", "create", "patch", "delete"},
    }
    (binding,) = dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert binding["inputs"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                            "name": "inferstack-controller"}
    assert binding["inputs"]["subjects"] == [{"kind": "ServiceAccount", "name": "inferstack-controller",
                                              "namespace": "inferstack-dev"}]
    control_plane = dev.named("inferstack-dev-control-plane", "kubernetes:apps/v1:Deployment")
    assert control_plane["inputs"]["spec"]["template"]["spec"]["serviceAccountName"] == "inferstack-controller"


def test_control_plane_is_reachable_through_an_ingress_that_does_not_cut_streams(dev: Program) -> None:
    (ingress,) = dev.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    annotations = ingress["inputs"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    rule = ingress["inputs"]["spec"]["rules"][0]
    assert rule["host"] == "inference.dev.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = [s for s in dev.of_type("kubernetes:core/v1:Service")
               if s["inputs"]["metadata"]["name"] == backend["name"]]
    assert service and service[0]["inputs"]["spec"]["ports"][0]["port"] == backend["port"]["number"]
    control_plane = dev.named("inferstack-dev-control-plane", "kubernetes:apps/v1:Deployment")["inputs"]["spec"]
    assert service[0]["inputs"]["spec"]["selector"] == control_plane["selector"]["matchLabels"]
    env = {e["name"]: e for e in control_plane["template"]["spec"]["containers"][0]["env"]}
    assert env["INFERSTACK_BOOTSTRAP_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "inferstack-api-key",
                                                                                "key": "api-key"}
    assert control_plane["strategy"] == {"type": "Recreate"}  # SQLite: never two writers


def test_profiles_in_use_get_their_scheduling_and_the_model_cache_is_shared(dev: Program) -> None:
    (profiles,) = dev.of_type("kubernetes:core/v1:ConfigMap")
    scheduling = json.loads(profiles["inputs"]["data"]["profiles.json"])
    assert set(scheduling) == {"gpu.l4", "cpu"}
    assert scheduling["gpu.l4"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert scheduling["cpu"] == {"nodeSelector": {}, "tolerations": []}
    cache = dev.named("inferstack-dev-model-cache")["inputs"]["spec"]
    assert cache["accessModes"] == ["ReadWriteMany"] and cache["storageClassName"] == "efs-sc"
    assert cache["resources"]["requests"]["storage"] == "500Gi"


def test_with_postgresql_the_control_plane_runs_several_pods_and_rolls(
        program: Callable[..., Program], tmp_path: Path) -> None:
    stack = yaml.safe_load((ROOT / "stacks/Pulumi.dev.yaml").read_text())
    stack["config"]["inferstack:platform"]["kubernetes"]["database_url_secret"] = "inferstack-database"
    stack["config"]["inferstack:platform"]["kubernetes"]["control_plane_replicas"] = 3
    path = tmp_path / "Pulumi.dev.yaml"  # the same stack name, with PostgreSQL
    path.write_text(yaml.safe_dump(stack))
    result = program(str(path))
    assert result.error is None, result.error
    spec = result.named("inferstack-dev-control-plane", "kubernetes:apps/v1:Deployment")["inputs"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["INFERSTACK_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "inferstack-database",
                                                                           "key": "url"}
