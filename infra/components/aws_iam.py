"""IAM on AWS: what each party may do, and nothing more. Every document passes `parliament` with no
finding above LOW (tests/infra/test_aws_iam.py).

- GPU replica instances: read their launch document (SSM, under the stack's prefix) and the Hugging
  Face token secret, pull images through the stack's ECR pull-through cache, write their logs, and
  mark their own instance unhealthy when the boot fails; read the LoRA adapters in the buckets the stack
  names (`adapter_buckets`, and those of declared deployments' S3 adapters), if any. No other S3, no
  other EC2 API.
- The controller (the control plane's ECS task): scale and inspect this stack's replica groups and
  instances (conditioned on the `inferstack:stack` tag); create groups and launch documents only under
  the names Pulumi never uses (`aws_groups.CONTROLLER_MARK`); launch only from this stack's launch
  templates (`ec2:LaunchTemplate`), tag instances only as they are launched or, for a claim, only with
  the claim's two keys on an instance already in the stack; pass the replica role to EC2 only; read
  the database password (rotated by RDS); use the batch bucket; list the adapter buckets (an S3 adapter
  is checked before it is added).
- ECS's execution role: pull the image (with the registry credentials, if any), write logs, inject
  the API key secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws_images import cache_prefix
from inferstack.providers.aws_groups import (
    CONTROLLER_MARK,
    DIGEST_TAG,
    REPLICA_TAG,
    STACK_TAG,
    controller_group_pattern,
    parameter_name,
    replica_log_group,
)

EC2_LAUNCHED = ("instance", "volume", "network-interface")
"""What RunInstances creates from a launch template (and tags as it creates)."""


def _assume(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def _policy(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass(frozen=True)
class IamArgs:
    stack: str
    parameter_prefix: str
    """SSM path of the launch documents, e.g. /inferstack/prod/deployments."""
    bucket_arn: pulumi.Input[str]
    api_key_secret_arn: pulumi.Input[str]
    token_key_secret_arn: pulumi.Input[str]
    database_password_secret_arn: pulumi.Input[str]
    hf_token_secret_arn: pulumi.Input[str] | None = None
    image_pull_secret_arn: str | None = None
    """Registry credentials (Secrets Manager) for a private control-plane image."""
    adapter_buckets: tuple[str, ...] = ()
    """Buckets of S3 LoRA adapters: replicas read them, the controller lists them."""


def adapter_statements(buckets: Sequence[str], read: bool) -> list[dict[str, Any]]:
    """Listing the adapter buckets (and with `read`, reading their objects); nothing without a bucket."""
    if not buckets:
        return []
    listing = [{"Sid": "AdapterBucketsList", "Effect": "Allow", "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{b}" for b in buckets]}]
    return listing + [{"Sid": "AdapterBucketsRead", "Effect": "Allow", "Action": ["s3:GetObject"],
                       "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets]}] * read


def replica_statements(stack: str, parameter_prefix: str, token_arn: str | None,
                       adapter_buckets: Sequence[str] = ()) -> list[dict[str, Any]]:
    tagged = {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}}
    statements: list[dict[str, Any]] = [
        {"Sid": "LaunchDocuments", "Effect": "Allow", "Action": ["ssm:GetParameter"],
         "Resource": f"arn:aws:ssm:*:*:parameter{parameter_name(parameter_prefix, '*')}"},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:*:*:log-group:{replica_log_group(stack)}:*"},
        # Pulls through the pull-through cache of Docker Hub (one authenticated pull for the whole
        # account, not anonymous pulls through one NAT address). Tokens cannot be scoped (an AWS limit).
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullThroughCache", "Effect": "Allow",
         "Resource": f"arn:aws:ecr:*:*:repository/{cache_prefix(stack)}/*",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]},
        {"Sid": "ReportFailedBoot", "Effect": "Allow", "Action": ["autoscaling:SetInstanceHealth"],
         "Resource": "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*", "Condition": tagged},
    ]
    if token_arn:
        statements.append({"Sid": "HuggingFaceToken", "Effect": "Allow",
                           "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                           "Resource": token_arn})
    return statements + adapter_statements(adapter_buckets, read=True)


def controller_statements(stack: str, parameter_prefix: str, bucket_arn: str, replica_role_arn: str,
                          database_secret_arn: str) -> list[dict[str, Any]]:
    """What the controller may do, except launching (`launch_statements`: it names the templates)."""
    tagged = {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}}
    groups = "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/"
    return [
        # Describe calls cannot be scoped to resources (an AWS limit); they read, never change.
        {"Sid": "Inspect", "Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
            "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeLaunchTemplates",
            "ec2:DescribeLaunchTemplateVersions"]},
        {"Sid": "ScaleOwnGroups", "Effect": "Allow", "Resource": f"{groups}*", "Condition": tagged, "Action": [
            "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
            "autoscaling:SetInstanceProtection", "autoscaling:UpdateAutoScalingGroup"]},
        # Groups of deployments made through the API, only under the controller's own names and only
        # with this stack's tag on them (which ScaleOwnGroups then covers).
        {"Sid": "CreateOwnGroups", "Effect": "Allow", "Resource": f"{groups}{controller_group_pattern(stack)}",
         "Action": ["autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags"],
         "Condition": {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack}}},
        # ... and deletes them with their deployment: its own names, this stack's tag.
        {"Sid": "DeleteOwnGroups", "Effect": "Allow", "Resource": f"{groups}{controller_group_pattern(stack)}",
         "Action": ["autoscaling:DeleteAutoScalingGroup"], "Condition": tagged},
        {"Sid": "StopOwnInstances", "Effect": "Allow", "Action": ["ec2:TerminateInstances"],
         "Resource": "arn:aws:ec2:*:*:instance/*", "Condition": tagged},
        # A claim marks an instance already in the stack with the claim's two keys, nothing else: it
        # cannot tag a foreign instance into the stack, nor change the stack tag.
        {"Sid": "ClaimOwnInstances", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": "arn:aws:ec2:*:*:instance/*", "Condition": {
             "StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack},
             "ForAllValues:StringEquals": {"aws:TagKeys": [REPLICA_TAG, DIGEST_TAG]}}},
        {"Sid": "PassReplicaRoleToEc2Only", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": replica_role_arn, "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "ReadLaunchDocuments", "Effect": "Allow", "Action": ["ssm:GetParameter"],
         "Resource": f"arn:aws:ssm:*:*:parameter{parameter_name(parameter_prefix, '*')}"},
        {"Sid": "WriteOwnLaunchDocuments", "Effect": "Allow", "Action": ["ssm:PutParameter", "ssm:DeleteParameter"],
         "Resource": f"arn:aws:ssm:*:*:parameter{parameter_name(parameter_prefix, CONTROLLER_MARK + '*')}"},
        {"Sid": "DatabasePassword", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": database_secret_arn},
        {"Sid": "ReadReplicaLogs", "Effect": "Allow", "Action": ["logs:GetLogEvents"],  # `inferstack logs`
         "Resource": f"arn:aws:logs:*:*:log-group:{replica_log_group(stack)}:log-stream:*"},
        {"Sid": "BatchFileList", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn},
        {"Sid": "BatchFiles", "Effect": "Allow", "Resource": f"{bucket_arn}/*",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]},
    ]


def launch_statements(stack: str, template_arns: Sequence[str]) -> list[dict[str, Any]]:
    """Creating or updating a group that launches from a template needs RunInstances on what it
    launches: only from this stack's templates, and tags only as part of that launch."""
    return [
        # One statement: every resource RunInstances touches, each only when launching from one of them.
        {"Sid": "LaunchOnlyFromOwnTemplates", "Effect": "Allow", "Action": ["ec2:RunInstances"],
         "Resource": [*template_arns, *[f"arn:aws:ec2:*:*:{kind}/*" for kind in EC2_LAUNCHED],
                      "arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*::image/*"],
         "Condition": {"ArnLike": {"ec2:LaunchTemplate": list(template_arns)}}},
        {"Sid": "TagOnLaunchOnly", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": [f"arn:aws:ec2:*:*:{kind}/*" for kind in EC2_LAUNCHED],
         "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances", f"aws:RequestTag/{STACK_TAG}": stack}}},
    ]


def execution_statements(secret_arns: Sequence[str]) -> list[dict[str, Any]]:
    return [{"Sid": "TaskSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
             "Resource": list(secret_arns)}]


class Iam(pulumi.ComponentResource):
    replica_instance_profile_arn: pulumi.Output[str]
    replica_role_arn: pulumi.Output[str]
    controller_role_arn: pulumi.Output[str]
    controller_role_id: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: IamArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:Iam", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {STACK_TAG: args.stack}

        replica = aws.iam.Role(f"{name}-replica", assume_role_policy=_assume("ec2.amazonaws.com"), tags=tags,
                               opts=child)
        token_arn = pulumi.Output.from_input(args.hf_token_secret_arn) if args.hf_token_secret_arn else None
        aws.iam.RolePolicy(f"{name}-replica", role=replica.id, policy=pulumi.Output.all(token_arn).apply(
            lambda arns: _policy(replica_statements(args.stack, args.parameter_prefix, arns[0],
                                                    args.adapter_buckets))), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-replica", role=replica.name, tags=tags, opts=child)

        controller = aws.iam.Role(f"{name}-controller", assume_role_policy=_assume("ecs-tasks.amazonaws.com"),
                                  tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-controller", role=controller.id, policy=pulumi.Output.all(
            args.bucket_arn, replica.arn, args.database_password_secret_arn).apply(lambda a: _policy(
                controller_statements(args.stack, args.parameter_prefix, a[0], a[1], a[2])
                + adapter_statements(args.adapter_buckets, read=False))), opts=child)

        execution = aws.iam.Role(f"{name}-execution", assume_role_policy=_assume("ecs-tasks.amazonaws.com"),
                                 tags=tags, opts=child)
        aws.iam.RolePolicyAttachment(
            f"{name}-execution", role=execution.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", opts=child)
        # What ECS injects into the task (its `secrets`) and the registry credentials of a private image.
        secrets = [args.api_key_secret_arn, args.token_key_secret_arn,
                   *([args.image_pull_secret_arn] if args.image_pull_secret_arn else [])]
        aws.iam.RolePolicy(f"{name}-execution-secrets", role=execution.id, policy=pulumi.Output.all(
            *secrets).apply(lambda arns: _policy(execution_statements(arns))), opts=child)

        self.replica_instance_profile_arn = profile.arn
        self.replica_role_arn = replica.arn
        self.controller_role_arn = controller.arn
        self.controller_role_id = controller.id
        self.execution_role_arn = execution.arn
        self.register_outputs({"controller_role_arn": self.controller_role_arn,
                               "replica_role_arn": self.replica_role_arn})


def launch_policy(name: str, stack: str, controller_role_id: pulumi.Input[str],
                  template_arns: Sequence[pulumi.Input[str]], opts: pulumi.ResourceOptions) -> aws.iam.RolePolicy:
    """The controller's launch rights, made once the templates exist (they need the replica profile
    from `Iam`, so they cannot be inputs of it)."""
    return aws.iam.RolePolicy(name, role=controller_role_id, policy=pulumi.Output.all(*template_arns).apply(
        lambda arns: _policy(launch_statements(stack, arns))), opts=opts)
