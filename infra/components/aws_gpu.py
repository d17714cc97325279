"""One EC2 launch template per hardware profile in use: the GPU AMI, the profile's instance type,
the replica instance profile and security group, IMDSv2 with instance tags, a root volume big
enough for the image and the weights cache, and a boot script that runs the official vLLM image.

The boot script is generic: it reads the deployment from the instance's `inferstack:deployment` tag,
its model, port, served names and flags from that deployment's launch document (SSM), and the token
from Secrets Manager. So one template serves every deployment on its profile, including those the
controller creates through the REST API, and no secret is ever in the template.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.replica import user_data
from inferstack.declared.stackfile import AwsSettings
from inferstack.hardware import PROFILES, aws_instance_type
from inferstack.providers.aws_groups import PROFILE_TAG, STACK_TAG, replica_log_group


@dataclass(frozen=True)
class GpuLaunchTemplatesArgs:
    stack: str
    settings: AwsSettings
    profiles: list[str]
    gpus_in_use: dict[str, int]
    """Profile name -> the GPUs per replica its launch template defaults to (the smallest in use); a
    replica group overrides the instance type when a deployment needs more."""
    instance_profile_arn: pulumi.Input[str]
    replica_sg_id: pulumi.Input[str]
    parameter_prefix: str
    hf_token_secret_name: str


class GpuLaunchTemplates(pulumi.ComponentResource):
    templates: dict[str, aws.ec2.LaunchTemplate]

    def __init__(self, name: str, args: GpuLaunchTemplatesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:GpuLaunchTemplates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ami = aws.ssm.get_parameter_output(name=args.settings.gpu_ami_ssm_parameter, opts=pulumi.InvokeOptions(
            parent=self)).value
        aws.cloudwatch.LogGroup(f"{name}-replica-logs", name=replica_log_group(args.stack), retention_in_days=30,
                                tags={STACK_TAG: args.stack},
                                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        self.templates = {}
        for profile in args.profiles:
            tags = {STACK_TAG: args.stack, PROFILE_TAG: profile}
            script = user_data(profile, args.parameter_prefix, args.hf_token_secret_name,
                               replica_log_group(args.stack))
            self.templates[profile] = aws.ec2.LaunchTemplate(
                f"{name}-{profile.replace('.', '-')}",
                name_prefix=f"inferstack-{args.stack}-{profile.replace('.', '-')}-",
                description=f"inferstack {args.stack}: {PROFILES[profile].gpu} replicas",
                image_id=ami,
                instance_type=aws_instance_type(profile, args.gpus_in_use.get(profile, 1)),
                iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=args.instance_profile_arn),
                vpc_security_group_ids=[args.replica_sg_id],
                metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2,
                    instance_metadata_tags="enabled"),
                block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/sda1", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.settings.gpu_root_volume_gb, volume_type="gp3", encrypted="true",
                        delete_on_termination="true"))],
                user_data=base64.b64encode(script.encode()).decode(),
                tag_specifications=[
                    aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags=tags),
                    aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=tags),
                ],
                update_default_version=True,
                tags=tags,
                opts=child,
            )
        self.register_outputs({"launch_template_ids": {p: t.id for p, t in self.templates.items()}})
