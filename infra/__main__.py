"""The inferstack Pulumi program: the platform of one target, then every declared deployment in it.

The only place config is read. Flow:
  config -> stack_config.load (validates with the shared spec; an invalid stack fails here, naming the
  field) -> the target's platform component (control plane + what replicas need) -> DeclaredDeployments
  (one control-plane resource per deployment, through the REST API) -> per-deployment replica
  infrastructure where the target has any (Kubernetes Deployments, AWS Auto Scaling groups).
"""

from __future__ import annotations

import pulumi

import stack_config
from components.deployments import DeclaredDeployments, DeclaredDeploymentsArgs
from inferstack.declared.stackfile import NAMESPACE, SECRET_KEYS

config = pulumi.Config(NAMESPACE)
raw = {f"{NAMESPACE}:target": config.get("target")}
for key in ("platform", "deployments"):
    value = config.get_object(key)
    if value is not None:
        raw[f"{NAMESPACE}:{key}"] = value
plain_text = [key for key in SECRET_KEYS
              if config.get(key) is not None and not pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}")]
inputs = stack_config.load(pulumi.get_stack(), raw, api_key=config.get_secret("apiKey"),
                           hf_token=config.get_secret("hfToken"), plain_text_secrets=plain_text,
                           token_key=config.get_secret("tokenKey"))
stack = inputs.config
platform_settings = stack.platform
name = f"inferstack-{stack.stack}"

if stack.target == "local":
    from components.local import LocalPlatform, LocalPlatformArgs

    platform = LocalPlatform(name, LocalPlatformArgs(stack=stack.stack, platform=platform_settings,
                                                     settings=platform_settings.local, api_key=inputs.api_key))
elif stack.target == "kubernetes":
    from components.kubernetes import KubernetesPlatform, KubernetesPlatformArgs

    platform = KubernetesPlatform(name, KubernetesPlatformArgs(
        stack=stack.stack, platform=platform_settings, settings=platform_settings.kubernetes,
        profiles=stack.hardware_profiles(), api_key=inputs.api_key, hf_token=inputs.hf_token,
        token_key=inputs.token_key))
else:
    from components.aws import AwsPlatform, AwsPlatformArgs

    platform = AwsPlatform(name, AwsPlatformArgs(
        stack=stack.stack, platform=platform_settings, settings=platform_settings.aws,
        deployments=list(stack.deployments), api_key=inputs.api_key, hf_token=inputs.hf_token,
        token_key=inputs.token_key))

declared = DeclaredDeployments(f"{name}-deployments", DeclaredDeploymentsArgs(
    url=platform.url, specs=stack.deployments, hf_token=inputs.hf_token),
    pulumi.ResourceOptions(depends_on=[platform]))

if stack.target == "kubernetes":
    from components.kubernetes_replicas import KubernetesReplicas, KubernetesReplicasArgs

    KubernetesReplicas(f"{name}-replicas", KubernetesReplicasArgs(
        namespace=platform.namespace, specs=stack.deployments, deployments=declared.deployments,
        vllm_image=platform_settings.vllm_image, runtime_image=platform_settings.image,
        model_cache_claim=platform.model_cache_claim, hf_token_secret_name=platform.hf_token_secret_name,
        gpu_taint_key=platform_settings.kubernetes.gpu_taint_key))
elif stack.target == "aws":
    from components.aws_replicas import ReplicaGroups, ReplicaGroupsArgs

    ReplicaGroups(f"{name}-replicas", ReplicaGroupsArgs(
        stack=stack.stack, specs=stack.deployments, deployments=declared.deployments,
        launch_template_ids={p: t.id for p, t in platform.launch_templates.templates.items()},
        private_subnet_ids=platform.network.private_subnet_ids, parameter_prefix=platform.parameter_prefix,
        vllm_image=platform.vllm_image, runtime_image=platform_settings.image))

pulumi.export("target", stack.target)
pulumi.export("url", platform.url)
if stack.target == "aws":
    pulumi.export("load_balancer_dns_name", platform.load_balancer_dns_name)  # for a CNAME without hosted_zone_id
pulumi.export("deployments", {n: d.deployment_id for n, d in declared.deployments.items()})
