"""The Kubernetes target's platform: namespace, control plane, its RBAC, secrets, caches, scheduling.

The control plane runs as one Deployment (SQLite on a volume: `Recreate`, never two writers; with
`database_url_secret` it uses PostgreSQL). Its ServiceAccount may do in this namespace exactly what the
`kubernetes` provider calls (providers/kubernetes_cluster.py; tests/infra/test_kubernetes_role.py
records the calls and compares): create, read and list replica Deployments, scale them, list and
annotate their pods, create, read and update the replicas' key Secrets, and delete the Deployments and
the Secret it made for a deployment that is deleted. No cluster-wide rights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from inferstack.declared.stackfile import KubernetesSettings, PlatformSettings
from inferstack.providers.kubernetes_pods import ROLE_LABEL
from inferstack.providers.kubernetes_pods import scheduling as pod_scheduling
from inferstack.settings import Env

CONTROL_PLANE_PORT = 8000
STATE_PATH = "/var/lib/inferstack"
PROFILES_PATH = "/etc/inferstack"
CONTROL_PLANE_SECRET = "inferstack-api-key"
"""The control plane's Secret: `api-key` (INFERSTACK_BOOTSTRAP_API_KEY), `token-key` (INFERSTACK_TOKEN_KEY)."""
LABELS = {"app.kubernetes.io/name": "inferstack", "app.kubernetes.io/component": "control-plane"}
PROVIDER_RULES: dict[tuple[str, str], frozenset[str]] = {
    # Listed and deleted: what the provider made for a deployment goes with it.
    ("apps", "deployments"): frozenset({"get", "list", "create", "delete"}),
    ("apps", "deployments/scale"): frozenset({"get", "patch"}),
    ("", "pods"): frozenset({"list", "patch"}),
    # The replicas' key and an API-created deployment's token: created once, read back after a restart,
    # the token rewritten when the deployment's changes, deleted with the deployment.
    ("", "secrets"): frozenset({"get", "create", "patch", "delete"}),
}
"""(API group, resource) -> verbs: exactly what the kubernetes provider calls."""


@dataclass(frozen=True)
class KubernetesPlatformArgs:
    stack: str
    platform: PlatformSettings
    settings: KubernetesSettings
    profiles: list[str]
    """Hardware profiles in use: one scheduling entry each."""
    api_key: pulumi.Input[str]
    token_key: pulumi.Input[str]
    """INFERSTACK_TOKEN_KEY: seals stored tokens; the same in every pod and across restarts."""
    hf_token: pulumi.Input[str] | None = None


class KubernetesPlatform(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    url: pulumi.Output[str]
    hf_token_secret_name: str | None
    model_cache_claim: str

    def __init__(self, name: str, args: KubernetesPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:kubernetes:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        meta = lambda object_name: k8s.meta.v1.ObjectMetaArgs(  # noqa: E731
            name=object_name, namespace=s.namespace, labels={"app.kubernetes.io/name": "inferstack"})

        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(
            name=s.namespace, labels={"app.kubernetes.io/name": "inferstack", "inferstack.io/stack": args.stack}),
            opts=child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        # --- secrets: each its own object, so a pod mounts only the one it needs ---------------------
        # The control plane's own: the bootstrap API key, and the key that seals stored tokens (a pod's
        # state path is not where it lives: with PostgreSQL there are several pods, and none keeps a home).
        api_key_secret = k8s.core.v1.Secret(f"{name}-api-key", metadata=meta(CONTROL_PLANE_SECRET), type="Opaque",
                                            string_data={"api-key": args.api_key, "token-key": args.token_key},
                                            opts=in_ns)
        self.hf_token_secret_name = None
        if args.hf_token is not None:
            self.hf_token_secret_name = "inferstack-hf-token"
            k8s.core.v1.Secret(f"{name}-hf-token", metadata=meta(self.hf_token_secret_name), type="Opaque",
                               string_data={"token": args.hf_token}, opts=in_ns)

        # --- the controller's identity: what the kubernetes provider calls, in this namespace only -------
        account = k8s.core.v1.ServiceAccount(f"{name}-controller", metadata=meta("inferstack-controller"),
                                             opts=in_ns)
        role = k8s.rbac.v1.Role(f"{name}-controller", metadata=meta("inferstack-controller"), rules=[
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[group], resources=[resource], verbs=sorted(verbs))
            for (group, resource), verbs in sorted(PROVIDER_RULES.items())
        ], opts=in_ns)
        k8s.rbac.v1.RoleBinding(f"{name}-controller", metadata=meta("inferstack-controller"),
                                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                                                 kind="Role", name="inferstack-controller"),
                                subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="inferstack-controller",
                                                                  namespace=s.namespace)],
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]))

        # --- storage: a shared model cache (weights download once per cluster), the state volume -----
        self.model_cache_claim = "inferstack-model-cache"
        k8s.core.v1.PersistentVolumeClaim(f"{name}-model-cache", metadata=meta(self.model_cache_claim),
                                          spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                                              access_modes=["ReadWriteMany"],
                                              storage_class_name=s.model_cache_storage_class,
                                              resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                                  requests={"storage": f"{s.model_cache_size_gb}Gi"})),
                                          opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]))
        if s.database_url_secret is None:
            k8s.core.v1.PersistentVolumeClaim(f"{name}-state", metadata=meta("inferstack-state"),
                                              spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                                                  access_modes=["ReadWriteOnce"],
                                                  resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                                      requests={"storage": f"{s.state_size_gb}Gi"})),
                                              opts=in_ns)

        # --- per hardware profile: node selector and tolerations of its GPU nodes ------------------
        scheduling = pod_scheduling(args.profiles, s.gpu_taint_key)
        profiles = k8s.core.v1.ConfigMap(f"{name}-profiles", metadata=meta("inferstack-profiles"),
                                         data={"profiles.json": json.dumps(scheduling, indent=2, sort_keys=True)},
                                         opts=in_ns)

        # --- the control plane -----------------------------------------------------------------------
        # The control plane's environment, named by the runtime's `Env` (tests/infra/test_environment_contract.py).
        plain = {
            Env.HOME: STATE_PATH,
            Env.PROVIDER: "kubernetes",
            Env.K8S_PROFILES: f"{PROFILES_PATH}/profiles.json",
            Env.K8S_MODEL_CACHE_CLAIM: self.model_cache_claim,
            Env.VLLM_IMAGE: args.platform.vllm_image,
            Env.RUNTIME_IMAGE: args.platform.image,
            Env.BOOTSTRAP_TENANT: args.platform.tenant,
        }
        if self.hf_token_secret_name:
            plain[Env.K8S_HF_TOKEN_SECRET] = self.hf_token_secret_name
        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in plain.items()]
        env += [
            k8s.core.v1.EnvVarArgs(name=Env.K8S_NAMESPACE, value_from=k8s.core.v1.EnvVarSourceArgs(
                field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.namespace"))),
            k8s.core.v1.EnvVarArgs(name=Env.BOOTSTRAP_API_KEY, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=CONTROL_PLANE_SECRET, key="api-key"))),
            k8s.core.v1.EnvVarArgs(name=Env.TOKEN_KEY, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=CONTROL_PLANE_SECRET, key="token-key"))),
        ]
        if s.database_url_secret:
            env.append(k8s.core.v1.EnvVarArgs(name=Env.DATABASE_URL, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=s.database_url_secret, key="url"))))
        volumes = [k8s.core.v1.VolumeArgs(name="profiles", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
            name="inferstack-profiles"))]
        mounts = [k8s.core.v1.VolumeMountArgs(name="profiles", mount_path=PROFILES_PATH, read_only=True)]
        if s.database_url_secret is None:
            volumes.append(k8s.core.v1.VolumeArgs(
                name="state", persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                    claim_name="inferstack-state")))
            mounts.append(k8s.core.v1.VolumeMountArgs(name="state", mount_path=STATE_PATH))
        probe = lambda initial: k8s.core.v1.ProbeArgs(  # noqa: E731
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=CONTROL_PLANE_PORT),
            initial_delay_seconds=initial, period_seconds=10, failure_threshold=6)
        control_plane = k8s.apps.v1.Deployment(
            f"{name}-control-plane",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="inferstack-control-plane", namespace=s.namespace,
                                                labels=LABELS),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # PostgreSQL: several pods, one leads (advisory lock), all serve; a rolling update hands the
                # lead over. SQLite on a ReadWriteOnce volume: one pod, and the old stops before the new starts.
                replicas=s.control_plane_replicas if s.database_url_secret else 1,
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
                ) if s.database_url_secret else k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=LABELS),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name="inferstack-controller",
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=10001, fs_group=10001),
                        # Long streams must finish before the pod goes: drain like the replicas do.
                        termination_grace_period_seconds=300,
                        containers=[k8s.core.v1.ContainerArgs(
                            name="control-plane", image=args.platform.image,
                            command=["inferstack", "serve", "--host", "0.0.0.0", "--port", str(CONTROL_PLANE_PORT)],
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=CONTROL_PLANE_PORT)],
                            env=env, volume_mounts=mounts,
                            readiness_probe=probe(5), liveness_probe=probe(30),
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "4Gi"}),
                        )],
                        volumes=volumes,
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, profiles, api_key_secret]),
        )
        service = k8s.core.v1.Service(
            f"{name}-control-plane",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="inferstack", namespace=s.namespace, labels=LABELS),
            spec=k8s.core.v1.ServiceSpecArgs(type="ClusterIP", selector=LABELS, ports=[
                k8s.core.v1.ServicePortArgs(name="http", port=80, target_port=CONTROL_PLANE_PORT)]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[control_plane]))

        # Replicas answer the control plane only (the gateway is the one way in).
        k8s.networking.v1.NetworkPolicy(
            f"{name}-replicas", metadata=meta("inferstack-replicas"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=ROLE_LABEL),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[k8s.networking.v1.NetworkPolicyPeerArgs(
                        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS))],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=8000, protocol="TCP")])]),
            opts=in_ns)

        in_cluster = f"http://inferstack.{s.namespace}.svc.cluster.local"
        if args.platform.public and s.ingress_host:
            timeout = str(s.request_timeout_s)
            ingress = k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="inferstack", namespace=s.namespace, labels=LABELS,
                    annotations={
                        # Streams: no buffering, and long completions may run for many minutes.
                        "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                        "nginx.ingress.kubernetes.io/proxy-read-timeout": timeout,
                        "nginx.ingress.kubernetes.io/proxy-send-timeout": timeout,
                        "nginx.ingress.kubernetes.io/proxy-body-size": "200m",  # batch input files
                        "inferstack.io/api-keys": "required",
                    }),
                spec=k8s.networking.v1.IngressSpecArgs(
                    ingress_class_name=s.ingress_class,
                    tls=[k8s.networking.v1.IngressTLSArgs(hosts=[s.ingress_host], secret_name=s.tls_secret)]
                    if s.tls_secret else None,
                    rules=[k8s.networking.v1.IngressRuleArgs(
                        host=s.ingress_host,
                        http=k8s.networking.v1.HTTPIngressRuleValueArgs(paths=[k8s.networking.v1.HTTPIngressPathArgs(
                            path="/", path_type="Prefix",
                            backend=k8s.networking.v1.IngressBackendArgs(service=k8s.networking.v1.IngressServiceBackendArgs(
                                name="inferstack", port=k8s.networking.v1.ServiceBackendPortArgs(number=80))))]))]),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[service]))
            scheme = "https" if s.tls_secret else "http"
            self.url = ingress.metadata.apply(lambda _m: f"{scheme}://{s.ingress_host}")
        else:
            self.url = service.metadata.apply(lambda _m: in_cluster)
        self.namespace = namespace.metadata.apply(lambda m: m.name)
        self.register_outputs({"namespace": self.namespace, "url": self.url})
