"""IAM on AWS: what each party may do, and nothing more.

- GPU replica instances: read their launch document (SSM, under the stack's prefix) and the Hugging
  Face token secret. Nothing else: no S3, no EC2 API.
- The controller (the control plane's ECS task): scale and inspect this stack's replica groups and
  instances (conditioned on the `inferstack:stack` tag), launch from this stack's launch templates,
  pass the replica role and no other, write launch documents under the prefix, use the batch bucket.
- ECS's execution role: pull the image, write logs, inject the two secrets the task needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from inferstack.providers.aws_groups import STACK_TAG, parameter_name


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
    database_password_secret_arn: pulumi.Input[str]
    hf_token_secret_arn: pulumi.Input[str] | None = None


class Iam(pulumi.ComponentResource):
    replica_instance_profile_arn: pulumi.Output[str]
    replica_role_arn: pulumi.Output[str]
    controller_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: IamArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:Iam", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {STACK_TAG: args.stack}
        parameters = f"arn:aws:ssm:*:*:parameter{parameter_name(args.parameter_prefix, '*')}"
        tagged = {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": args.stack}}

        # --- GPU replica instances -------------------------------------------------------------------
        replica = aws.iam.Role(f"{name}-replica", assume_role_policy=_assume("ec2.amazonaws.com"), tags=tags,
                               opts=child)
        replica_reads = [{"Sid": "LaunchDocuments", "Effect": "Allow", "Action": ["ssm:GetParameter"],
                          "Resource": parameters}]
        token_arn = pulumi.Output.from_input(args.hf_token_secret_arn) if args.hf_token_secret_arn else None
        aws.iam.RolePolicy(f"{name}-replica", role=replica.id, policy=pulumi.Output.all(token_arn).apply(
            lambda arns: _policy(replica_reads + ([{
                "Sid": "HuggingFaceToken", "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": arns[0]}] if arns[0] else []))), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-replica", role=replica.name, tags=tags, opts=child)

        # --- the controller --------------------------------------------------------------------------
        controller = aws.iam.Role(f"{name}-controller", assume_role_policy=_assume("ecs-tasks.amazonaws.com"),
                                  tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-controller", role=controller.id, policy=pulumi.Output.all(
            args.bucket_arn, replica.arn).apply(lambda a: _policy([
                # Describe calls cannot be scoped to resources (an AWS limit); they read, never change.
                {"Sid": "Inspect", "Effect": "Allow", "Resource": "*", "Action": [
                    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
                    "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeLaunchTemplates"]},
                {"Sid": "ScaleOwnGroups", "Effect": "Allow", "Resource": "*", "Condition": tagged, "Action": [
                    "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
                    "autoscaling:SetInstanceProtection", "autoscaling:UpdateAutoScalingGroup"]},
                # Deployments created through the REST API get their groups from the controller; it
                # may only create groups carrying this stack's tag (which ScaleOwnGroups then covers).
                {"Sid": "CreateOwnGroups", "Effect": "Allow", "Resource": "*",
                 "Action": ["autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags"],
                 "Condition": {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": args.stack}}},
                {"Sid": "LaunchFromOwnTemplates", "Effect": "Allow", "Action": ["ec2:RunInstances"],
                 "Resource": "arn:aws:ec2:*:*:launch-template/*", "Condition": tagged},
                {"Sid": "LaunchResources", "Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:CreateTags"],
                 "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*",
                              "arn:aws:ec2:*:*:network-interface/*", "arn:aws:ec2:*:*:subnet/*",
                              "arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*::image/*",
                              "arn:aws:ec2:*:*:spot-instances-request/*"]},
                {"Sid": "StopOwnInstances", "Effect": "Allow", "Action": ["ec2:TerminateInstances"],
                 "Resource": "arn:aws:ec2:*:*:instance/*", "Condition": tagged},
                {"Sid": "PassReplicaRoleOnly", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": a[1]},
                {"Sid": "LaunchDocuments", "Effect": "Allow", "Resource": parameters,
                 "Action": ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"]},
                {"Sid": "BatchFiles", "Effect": "Allow", "Resource": [a[0], f"{a[0]}/*"],
                 "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"]},
            ])), opts=child)

        # --- ECS task execution ----------------------------------------------------------------------
        execution = aws.iam.Role(f"{name}-execution", assume_role_policy=_assume("ecs-tasks.amazonaws.com"),
                                 tags=tags, opts=child)
        aws.iam.RolePolicyAttachment(
            f"{name}-execution", role=execution.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", opts=child)
        aws.iam.RolePolicy(f"{name}-execution-secrets", role=execution.id, policy=pulumi.Output.all(
            args.api_key_secret_arn, args.database_password_secret_arn).apply(lambda arns: _policy([
                {"Sid": "TaskSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                 "Resource": list(arns)}])), opts=child)

        self.replica_instance_profile_arn = profile.arn
        self.replica_role_arn = replica.arn
        self.controller_role_arn = controller.arn
        self.execution_role_arn = execution.arn
        self.register_outputs({"controller_role_arn": self.controller_role_arn,
                               "replica_role_arn": self.replica_role_arn})
