"""What a replica pod is on Kubernetes, and what a pod's status says. Pure: plain dicts in and out.

One description, read by the `kubernetes` provider (Deployments it creates for deployments made
through the API) and by infra's `KubernetesReplicas` (declared ones): names, labels, scheduling,
sizing, the Secret references. Manifests are the API's own JSON (camelCase), so they validate
against the Kubernetes OpenAPI schemas as they are (tests/providers/test_kubernetes_pods.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from inferstack.engines.container import ADAPTERS_DIR, REPLICA_PORT, TOKEN_ENV, replica_container
from inferstack.hardware import PROFILES
from inferstack.spec import DeploymentSpec

ROLE_LABEL = {"inferstack.io/role": "replica"}
DEPLOYMENT_LABEL = "inferstack.io/deployment"
DEPLOYMENT_ID_ANNOTATION = "inferstack.io/deployment-id"
REPLICA_ANNOTATION = "inferstack.io/replica-id"
"""Which control-plane replica a pod is: a new leader keeps the pod under this id (and operators see it)."""
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LEAVING_COST = "-1000000"
"""The chosen pod's deletion cost: lower than any other pod's (default 0), so the ReplicaSet removes it."""
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
CACHE_PATH = "/root/.cache/huggingface"
KEY_ENV = "VLLM_API_KEY"
KEY_SECRET_KEY = "api-key"
TOKEN_SECRET_KEY = "token"
NODE_NAME_LABEL = "kubernetes.io/hostname"


def replica_deployment_name(deployment_name: str) -> str:
    """The declared Deployment's name (infra's); the provider's own carry their pod shape too."""
    return f"replicas-{deployment_name}"


SHAPE_LABEL = "inferstack.io/shape"
"""A digest of the pod template: after a reshaping update new replicas go to a new Deployment, while the
old shape's pods keep serving until the controller retires them one by one (a template change in place
would roll every pod at once)."""


def own_deployment_name(deployment_name: str, shape: str) -> str:
    """The name of a Deployment the provider makes for one pod shape of a deployment."""
    return f"{replica_deployment_name(deployment_name)}-{shape}"


def replica_secret_name(deployment_name: str) -> str:
    """The Secret with a deployment's replica key (and its own Hugging Face token, if it has one)."""
    return f"replicas-{deployment_name}"


def replica_labels(deployment_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "inferstack", DEPLOYMENT_LABEL: deployment_name, **ROLE_LABEL}


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# --- scheduling and sizing ----------------------------------------------------------------------------


def node_selector(profile_name: str) -> dict[str, str]:
    product = PROFILES[profile_name].k8s_gpu_product
    return {"nvidia.com/gpu.product": product} if product else {}


def tolerations(profile_name: str, taint_key: str = GPU_TAINT_KEY) -> list[dict[str, str]]:
    if not PROFILES[profile_name].k8s_gpu_product:
        return []
    return [{"key": taint_key, "operator": "Exists", "effect": "NoSchedule"}]


def scheduling(profiles: list[str], taint_key: str = GPU_TAINT_KEY) -> dict[str, Any]:
    """Per hardware profile: where its pods go (infra writes this as the profiles file; the provider
    reads it, so API-created deployments land on the same nodes as declared ones)."""
    return {name: {"nodeSelector": node_selector(name), "tolerations": tolerations(name, taint_key)}
            for name in profiles}


def resources(spec: DeploymentSpec) -> dict[str, dict[str, str]]:
    """Requests that fit the profile's smallest machine (`HardwareProfile.pod_size`); memory is also the
    limit (a replica over it is OOMKilled rather than starving its neighbours), CPU is not limited."""
    cpus, memory_gib = spec.profile.pod_size(spec.gpus_per_replica)
    requests = {"cpu": str(cpus), "memory": f"{memory_gib}Gi"}
    limits = {"memory": f"{memory_gib}Gi"}
    if spec.profile.k8s_gpu_product:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.gpus_per_replica)
    return {"requests": requests, "limits": limits}


def node_affinity(node_names: list[str]) -> dict[str, Any] | None:
    """Pinning to named nodes (on-prem machines): required, so a pod never lands elsewhere."""
    if not node_names:
        return None
    term = {"matchExpressions": [{"key": NODE_NAME_LABEL, "operator": "In", "values": sorted(node_names)}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


# --- the replica Deployment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSettings:
    """The cluster side of a replica pod: images, the profile's placement, volumes and secrets."""

    namespace: str
    vllm_image: str
    runtime_image: str
    placement: dict[str, Any]
    """This profile's entry of the profiles file: nodeSelector and tolerations."""
    model_cache_claim: str | None = None
    hf_token_secret: str | None = None
    """The platform's Secret with a Hugging Face token (key `token`), used when the spec has none."""
    port: int = REPLICA_PORT


def replica_deployment(spec: DeploymentSpec, deployment_id: str, name: str, pods: PodSettings) -> dict[str, Any]:
    """The Deployment of a deployment's replicas, at 0 replicas, named by its shape: the provider scales it."""
    container = replica_container(spec, deployment_id, name, pods.vllm_image, pods.runtime_image, port=pods.port)
    secret = replica_secret_name(name)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(container.env.items())]
    env.append({"name": KEY_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": KEY_SECRET_KEY}}})
    if spec.hf_token is not None:
        env.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_SECRET_KEY}}})
    elif pods.hf_token_secret:
        env.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": pods.hf_token_secret,
                                                                        "key": TOKEN_SECRET_KEY}}})
    probe = {"httpGet": {"path": "/health", "port": pods.port}, "periodSeconds": 5, "failureThreshold": 3}
    volumes: list[dict[str, Any]] = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "shm", "mountPath": "/dev/shm"}]
    if pods.model_cache_claim:
        env.append({"name": "HF_HOME", "value": CACHE_PATH})
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": pods.model_cache_claim}})
        mounts.append({"name": "model-cache", "mountPath": CACHE_PATH})
    pod_spec: dict[str, Any] = {
        # In-flight requests finish before a replica goes (the controller drains first).
        "terminationGracePeriodSeconds": int(spec.drain_timeout_s) + 30,
        "containers": [{
            "name": "engine", "image": container.image, "command": container.command, "env": env,
            "ports": [{"name": "http", "containerPort": pods.port}],
            "resources": resources(spec),
            # Cold start (download, load, compile) takes minutes: up to 30 before a restart.
            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 180},
            "readinessProbe": probe, "livenessProbe": probe, "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }
    if container.fetch_command:  # S3 adapters: fetched into a volume the engine reads, before it starts
        volumes.append({"name": "adapters", "emptyDir": {}})
        mounts.append({"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True})
        pod_spec["initContainers"] = [{
            "name": "fetch-adapters", "image": pods.runtime_image, "command": container.fetch_command,
            "volumeMounts": [{"name": "adapters", "mountPath": ADAPTERS_DIR}]}]
    if pods.placement.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(pods.placement["nodeSelector"])
    if pods.placement.get("tolerations"):
        pod_spec["tolerations"] = list(pods.placement["tolerations"])
    affinity = node_affinity(spec.node_names)
    if affinity:
        pod_spec["affinity"] = affinity
    shape = hashlib.sha256(json.dumps(pod_spec, sort_keys=True).encode()).hexdigest()[:10]
    labels = replica_labels(name) | {SHAPE_LABEL: shape}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": own_deployment_name(name, shape), "namespace": pods.namespace,
                     "labels": labels,
                     "annotations": {DEPLOYMENT_ID_ANNOTATION: deployment_id,
                                     "inferstack.io/hardware-profile": spec.hardware_profile}},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def replica_secret(name: str, namespace: str, api_key: str, spec: DeploymentSpec) -> dict[str, Any]:
    """The replicas' key and the deployment's own Hugging Face token: referenced by the pods, never inlined."""
    data = {KEY_SECRET_KEY: api_key}
    if spec.hf_token is not None:
        data[TOKEN_SECRET_KEY] = spec.hf_token.get_secret_value()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": replica_secret_name(name), "namespace": namespace, "labels": replica_labels(name)},
            "stringData": data}


# --- reading a pod ------------------------------------------------------------------------------------

# Container waiting reasons that will not fix themselves: the replica is failed, with this reason.
STUCK_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                           "CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class PodView:
    """What the provider reads of a pod."""

    name: str
    labels: dict[str, str]
    replica_id: str | None
    """The control-plane replica that claimed it (`REPLICA_ANNOTATION`), if one did."""
    deleting: bool
    leaving: bool
    """Marked to be removed on the next scale-down (`LEAVING_COST`): never claimed again."""
    address: str | None
    """http://podIP:port once the pod has an IP."""
    ready: bool
    unschedulable: str | None
    """The scheduler's message while the pod cannot be placed (PodScheduled False, Unschedulable)."""
    restarts: int
    stuck: str | None
    """Why the pod will not serve without help: it failed or was evicted, or a container is stuck."""
    last_exit: str | None
    """How its container last ended (OOMKilled, Error...) with the exit code, if it ever did."""


def read_pod(pod: dict[str, Any]) -> PodView:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled", {})
    unschedulable = (scheduled.get("message") or "Unschedulable"
                     if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable" else None)
    containers = status.get("containerStatuses") or []
    port = _http_port(spec)
    ip = status.get("podIP")
    annotations = meta.get("annotations") or {}
    return PodView(
        name=meta.get("name", ""),
        labels=dict(meta.get("labels") or {}),
        replica_id=annotations.get(REPLICA_ANNOTATION),
        deleting=meta.get("deletionTimestamp") is not None,
        leaving=annotations.get(DELETION_COST) == LEAVING_COST,
        address=f"http://{ip}:{port}" if ip and port else None,
        ready=conditions.get("Ready", {}).get("status") == "True",
        unschedulable=unschedulable,
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        stuck=_stuck(status, containers),
        last_exit=_last_exit(containers),
    )


def _http_port(spec: dict[str, Any]) -> int | None:
    """The replica's port: the container port named `http` (a real cluster: the pod IP and this port)."""
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return None


def _stuck(status: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    if status.get("phase") in ("Failed", "Succeeded"):
        detail = f": {status['message']}" if status.get("message") else ""
        return f"pod {status['phase'].lower()} ({status.get('reason') or 'exited'}){detail}"
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return waiting["reason"] + (f": {waiting['message']}" if waiting.get("message") else "")
    return None


def _last_exit(containers: list[dict[str, Any]]) -> str | None:
    for container in containers:
        state, last = container.get("state") or {}, container.get("lastState") or {}
        terminated = state.get("terminated") or last.get("terminated")
        if terminated:
            return f"{terminated.get('reason') or 'Error'} (exit code {terminated.get('exitCode')})"
    return None


def pod_failure(view: PodView, restarts_at_claim: int) -> str | None:
    """Why a claimed pod no longer serves its replica, or None: it is stuck or failed, or its container
    ended since the claim (a crash or an OOMKill: the restarted container is a fresh, cold replica)."""
    if view.stuck:
        return view.stuck
    if view.restarts > restarts_at_claim:
        return view.last_exit or "container restarted"
    return None
