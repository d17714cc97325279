"""The AWS target's platform: network, state, IAM, GPU launch templates, gateway, control plane.

Composition only; each part is its own component in `aws_*.py`. The replica groups of the declared
deployments come after the deployments exist (their launch documents name the deployment's id), in
`aws_replicas.ReplicaGroups`, wired by `infra/__main__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.aws_control_plane import ControlPlaneService, ControlPlaneServiceArgs
from components.aws_gateway import Gateway, GatewayArgs
from components.aws_gpu import GpuLaunchTemplates, GpuLaunchTemplatesArgs
from components.aws_iam import Iam, IamArgs, launch_policy
from components.aws_images import replica_image
from components.aws_network import Network, NetworkArgs
from components.aws_state import StateStores, StateStoresArgs, hf_token_secret_name
from inferstack.declared.stackfile import AwsSettings, PlatformSettings
from inferstack.lora import S3_SCHEME
from inferstack.providers.aws_groups import parameter_prefix
from inferstack.s3 import location as s3_location
from inferstack.spec import DeploymentSpec


def adapter_buckets(settings: AwsSettings, deployments: list[DeploymentSpec]) -> tuple[str, ...]:
    """The buckets the stack names for S3 adapters: its `adapter_buckets` and those of declared adapters."""
    declared = {s3_location(a.source)[0] for spec in deployments for a in spec.adapters
                if a.source.startswith(S3_SCHEME)}
    return tuple(sorted(set(settings.adapter_buckets) | declared))


@dataclass(frozen=True)
class AwsPlatformArgs:
    stack: str
    platform: PlatformSettings
    settings: AwsSettings
    deployments: list[DeploymentSpec]
    api_key: pulumi.Input[str]
    token_key: pulumi.Input[str]
    hf_token: pulumi.Input[str] | None = None


class AwsPlatform(pulumi.ComponentResource):
    url: pulumi.Output[str]
    load_balancer_dns_name: pulumi.Output[str]
    vllm_image: pulumi.Output[str]
    """The replicas' image as they pull it: through the ECR pull-through cache when it is on Docker Hub."""
    network: Network
    launch_templates: GpuLaunchTemplates
    parameter_prefix: str

    def __init__(self, name: str, args: AwsPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        self.parameter_prefix = parameter_prefix(args.stack)
        profiles = list(dict.fromkeys(d.hardware_profile for d in args.deployments))
        gpus_in_use: dict[str, int] = {}
        for spec in args.deployments:
            gpus_in_use[spec.hardware_profile] = min(gpus_in_use.get(spec.hardware_profile, 8), spec.gpus_per_replica)

        self.network = Network(f"{name}-network",
                               NetworkArgs(stack=args.stack, settings=s, public=args.platform.public), child)
        net = self.network
        state = StateStores(f"{name}-state", StateStoresArgs(
            stack=args.stack, settings=s, private_subnet_ids=net.private_subnet_ids,
            database_sg_id=net.database_sg_id, api_key=args.api_key, token_key=args.token_key,
            hf_token=args.hf_token), child)
        iam = Iam(f"{name}-iam", IamArgs(
            stack=args.stack, parameter_prefix=self.parameter_prefix, bucket_arn=state.bucket_arn,
            api_key_secret_arn=state.api_key_secret_arn, token_key_secret_arn=state.token_key_secret_arn,
            database_password_secret_arn=state.database_password_secret_arn,
            hf_token_secret_arn=state.hf_token_secret_arn, image_pull_secret_arn=s.image_pull_secret_arn,
            adapter_buckets=adapter_buckets(s, args.deployments)), child)
        self.vllm_image = replica_image(f"{name}-images", args.stack, args.platform.vllm_image,
                                        s.docker_hub_credentials_secret_arn, self)
        self.launch_templates = GpuLaunchTemplates(f"{name}-gpu", GpuLaunchTemplatesArgs(
            stack=args.stack, settings=s, profiles=profiles, gpus_in_use=gpus_in_use,
            instance_profile_arn=iam.replica_instance_profile_arn, replica_sg_id=net.replica_sg_id,
            parameter_prefix=self.parameter_prefix, hf_token_secret_name=hf_token_secret_name(args.stack)), child)
        launch_policy(f"{name}-iam-controller-launch", args.stack, iam.controller_role_id,
                      [t.arn for t in self.launch_templates.templates.values()], child)
        gateway = Gateway(f"{name}-gateway", GatewayArgs(
            stack=args.stack, settings=s, public=args.platform.public, vpc_id=net.vpc_id,
            public_subnet_ids=net.public_subnet_ids, private_subnet_ids=net.private_subnet_ids,
            load_balancer_sg_id=net.load_balancer_sg_id), child)
        control_plane = ControlPlaneService(f"{name}-control-plane", ControlPlaneServiceArgs(
            stack=args.stack, platform=args.platform, settings=s, private_subnet_ids=net.private_subnet_ids,
            control_plane_sg_id=net.control_plane_sg_id, target_group_arn=gateway.target_group_arn,
            execution_role_arn=iam.execution_role_arn, task_role_arn=iam.controller_role_arn,
            bucket_name=state.bucket_name, database_address=state.database_address,
            database_password_secret_arn=state.database_password_secret_arn,
            api_key_secret_arn=state.api_key_secret_arn, token_key_secret_arn=state.token_key_secret_arn,
            launch_template_ids={p: t.id for p, t in self.launch_templates.templates.items()},
            parameter_prefix=self.parameter_prefix, vllm_image=self.vllm_image,
            declared=[d.name or "" for d in args.deployments], depends_on=[gateway]), child)
        # The URL is known once the service is steady: deployments are created after that.
        self.url = pulumi.Output.all(gateway.url, control_plane.service_name).apply(lambda a: a[0])
        self.load_balancer_dns_name = gateway.load_balancer_dns_name
        self.register_outputs({"url": self.url, "management_url": gateway.management_url,
                               "load_balancer_dns_name": gateway.load_balancer_dns_name,
                               "launch_templates": {p: t.id for p, t in self.launch_templates.templates.items()},
                               "files_bucket": state.bucket_name})
