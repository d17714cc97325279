"""Per declared deployment, the Kubernetes Deployment that runs its replicas.

Pulumi owns the pod template (image, model, flags, scheduling, secrets); the controller owns
`spec.replicas` (scale from zero, autoscaling, pauses), so Pulumi ignores it after creation: without
`ignore_changes`, every `pulumi up` would reset the count and fight the autoscaler.
The controller finds these by name, `replicas-<deployment name>`, in the platform's namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from deployment_resource import InferenceDeployment
from inferstack.engines.container import ADAPTERS_DIR, REPLICA_PORT, TOKEN_ENV, fetch_command, replica_container
from inferstack.providers.kubernetes_pods import (
    CACHE_PATH,
    KEY_ENV,
    KEY_SECRET_KEY,
    node_selector,
    replica_deployment_name,
    replica_labels,
    replica_secret_name,
    resources,
    tolerations,
)
from inferstack.spec import DeploymentSpec

GPU_ROLLOUT_TIMEOUT_S = 45 * 60
"""A 70B model on a fresh node: image pull ~5 min, weights download ~15-25 min, load ~5 min."""


@dataclass(frozen=True)
class KubernetesReplicasArgs:
    namespace: pulumi.Input[str]
    specs: Sequence[DeploymentSpec]
    deployments: dict[str, InferenceDeployment]
    """The control plane's resource of each spec, by name: the served names include its id."""
    vllm_image: str
    runtime_image: str
    model_cache_claim: str
    hf_token_secret_name: str | None
    gpu_taint_key: str = "nvidia.com/gpu"


class KubernetesReplicas(pulumi.ComponentResource):
    replica_deployments: dict[str, k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: KubernetesReplicasArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:kubernetes:Replicas", name, None, opts)
        self.replica_deployments = {}
        for spec in args.specs:
            assert spec.name
            self.replica_deployments[spec.name] = self._replicas(name, spec, args)
        names = {n: d.metadata.name for n, d in self.replica_deployments.items()}
        self.register_outputs({"replica_deployments": names})

    def _replicas(self, name: str, spec: DeploymentSpec, args: KubernetesReplicasArgs) -> k8s.apps.v1.Deployment:
        assert spec.name
        resource = args.deployments[spec.name]
        labels = replica_labels(spec.name)
        container = resource.deployment_id.apply(
            lambda deployment_id: replica_container(spec, deployment_id, spec.name or deployment_id, args.vllm_image,
                                                    args.runtime_image))
        env: list[k8s.core.v1.EnvVarArgs] = [
            k8s.core.v1.EnvVarArgs(name="HF_HOME", value=CACHE_PATH),
            # The replicas' key, from the Secret the controller creates before it scales this up
            # (optional: pods of the first count may start before it exists, and then take any key).
            k8s.core.v1.EnvVarArgs(name=KEY_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=replica_secret_name(spec.name),
                                                                 key=KEY_SECRET_KEY, optional=True))),
        ]
        env_plain = container.apply(lambda c: [{"name": k, "value": v} for k, v in sorted(c.env.items())])
        if args.hf_token_secret_name:
            env.append(k8s.core.v1.EnvVarArgs(name=TOKEN_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=args.hf_token_secret_name, key="token"))))
        fetch = fetch_command(spec)
        empty = k8s.core.v1.EmptyDirVolumeSourceArgs()
        probe = k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=REPLICA_PORT),
                                      period_seconds=5, failure_threshold=3)
        return k8s.apps.v1.Deployment(
            f"{name}-{spec.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=replica_deployment_name(spec.name), namespace=args.namespace, labels=labels,
                annotations={"inferstack.io/deployment-id": resource.deployment_id,
                             "inferstack.io/hardware-profile": spec.hardware_profile,
                             # Pulumi's await of a rollout (10 min by default) is shorter than a GPU
                             # node's image pull plus a large model's download and load.
                             "pulumi.com/timeoutSeconds": str(GPU_ROLLOUT_TIMEOUT_S)}),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # The first count only: afterwards the controller scales this (ignore_changes below).
                replicas=spec.min_replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        node_selector=node_selector(spec.hardware_profile) or None,
                        tolerations=tolerations(spec.hardware_profile, args.gpu_taint_key) or None,
                        # In-flight requests finish before a replica goes (the controller drains first).
                        termination_grace_period_seconds=int(spec.drain_timeout_s) + 30,
                        containers=[k8s.core.v1.ContainerArgs(
                            name="engine",
                            image=container.apply(lambda c: c.image),
                            command=container.apply(lambda c: c.command),
                            env=pulumi.Output.all(env_plain, env).apply(lambda parts: [*parts[1], *parts[0]]),
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=REPLICA_PORT)],
                            resources=resources(spec),
                            # Cold start (download, load, compile) takes minutes: up to 30 before a restart.
                            startup_probe=k8s.core.v1.ProbeArgs(
                                http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=REPLICA_PORT),
                                period_seconds=10, failure_threshold=180),
                            readiness_probe=probe,
                            liveness_probe=probe,
                            volume_mounts=[
                                k8s.core.v1.VolumeMountArgs(name="model-cache", mount_path=CACHE_PATH),
                                k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
                                *([k8s.core.v1.VolumeMountArgs(name="adapters", mount_path=ADAPTERS_DIR,
                                                               read_only=True)] if fetch else []),
                            ],
                        )],
                        # S3 adapters: fetched by the runtime image into a volume the engine reads, before it starts.
                        init_containers=[k8s.core.v1.ContainerArgs(
                            name="fetch-adapters", image=args.runtime_image, command=fetch,
                            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="adapters", mount_path=ADAPTERS_DIR)],
                        )] if fetch else None,
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="model-cache",
                                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=args.model_cache_claim)),
                            k8s.core.v1.VolumeArgs(name="shm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                                medium="Memory", size_limit="16Gi")),
                            *([k8s.core.v1.VolumeArgs(name="adapters", empty_dir=empty)] if fetch else []),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"], depends_on=[resource]),
        )
