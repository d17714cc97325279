"""Per declared deployment on AWS: its launch document and the Auto Scaling group(s) of its replicas.

These are Pulumi's: the controller never creates them (it waits for them, then only scales them; see
`aws_groups.owner_of`), so the two never race for one name. The control plane learns which
deployments are declared from INFERSTACK_AWS_DECLARED_DEPLOYMENTS (`aws_control_plane.py`).

The group's capacity belongs to the controller (it sets the desired capacity from its decisions and
terminates the drained instance it chose), so Pulumi ignores `desired_capacity` after creation:
without that, each `pulumi up` would reset the count and fight the autoscaler.

Spot with on-demand fallback: a deployment with `allow_spot` gets two groups on the same launch
template, `-spot` (spot only) and `-on-demand` (empty at first). The controller grows the spot group
first and, when spot capacity does not come within its wait, the on-demand one; other deployments get
the on-demand group only. Names, tags and settings come from `inferstack.providers.aws_groups`, the
description the controller's `aws` provider creates its own groups from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.replica import instance_type
from deployment_resource import InferenceDeployment
from inferstack.engines.container import launch_document
from inferstack.providers.aws_groups import (
    DEPLOYMENT_TAG,
    OWNER_TAG,
    PARAMETER_TIER,
    PARAMETER_TYPE,
    STACK_TAG,
    ReplicaGroup,
    launch_document_name,
    launch_template_id,
    replica_groups,
)
from inferstack.spec import DeploymentSpec


@dataclass(frozen=True)
class ReplicaGroupsArgs:
    stack: str
    specs: Sequence[DeploymentSpec]
    deployments: dict[str, InferenceDeployment]
    launch_template_ids: dict[str, pulumi.Input[str]]
    """Hardware profile -> its launch template."""
    private_subnet_ids: pulumi.Input[list[str]]
    parameter_prefix: str
    vllm_image: pulumi.Input[str]
    runtime_image: str


class ReplicaGroups(pulumi.ComponentResource):
    groups: dict[str, list[aws.autoscaling.Group]]

    def __init__(self, name: str, args: ReplicaGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:ReplicaGroups", name, None, opts)
        self.groups = {}
        for spec in args.specs:
            assert spec.name
            self.groups[spec.name] = self._deployment(name, spec, args)
        self.register_outputs({"groups": {n: [g.name for g in gs] for n, gs in self.groups.items()}})

    def _deployment(self, name: str, spec: DeploymentSpec, args: ReplicaGroupsArgs) -> list[aws.autoscaling.Group]:
        assert spec.name
        resource = args.deployments[spec.name]
        document = aws.ssm.Parameter(
            f"{name}-{spec.name}", name=launch_document_name(args.parameter_prefix, spec.name, "pulumi"),
            type=PARAMETER_TYPE,
            tier=PARAMETER_TIER,
            insecure_value=pulumi.Output.all(resource.deployment_id, args.vllm_image).apply(
                lambda a: launch_document(spec, a[0], spec.name or a[0], a[1], args.runtime_image)),
            description=f"inferstack {args.stack}: what replicas of {spec.name} run (no secrets)",
            tags={STACK_TAG: args.stack, DEPLOYMENT_TAG: spec.name, OWNER_TAG: "pulumi"},
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))  # a fixed name
        groups = replica_groups(
            args.stack, spec.name, spec, deployment_id=resource.deployment_id,
            launch_template_id=launch_template_id(args.launch_template_ids, spec.hardware_profile, args.stack),
            instance_type=instance_type(spec))
        return [self._group(f"{name}-{spec.name}-{group.capacity}", group, args, [document, resource])
                for group in groups]

    def _group(self, name: str, group: ReplicaGroup[pulumi.Input[str]], args: ReplicaGroupsArgs,
               depends_on: list[pulumi.Resource]) -> aws.autoscaling.Group:
        return aws.autoscaling.Group(
            name, name=group.name,
            # The first count only; afterwards the controller's (see ignore_changes).
            min_size=group.min_size, max_size=group.max_size, desired_capacity=group.declared_desired_capacity,
            vpc_zone_identifiers=args.private_subnet_ids,
            mixed_instances_policy=aws.autoscaling.GroupMixedInstancesPolicyArgs(
                launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                    launch_template_specification=aws.autoscaling.
                    GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                        launch_template_id=group.launch_template_id, version=group.launch_template_version),
                    overrides=[aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(
                        instance_type=group.instance_type)]),
                instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                    on_demand_base_capacity=group.on_demand_base_capacity,
                    on_demand_percentage_above_base_capacity=group.on_demand_percentage_above_base_capacity,
                    spot_allocation_strategy=group.spot_allocation_strategy)),
            health_check_type=group.health_check_type, health_check_grace_period=group.health_check_grace_period_s,
            protect_from_scale_in=group.protect_from_scale_in, capacity_rebalance=group.capacity_rebalance,
            # The controller waits for its replicas (GPU capacity can take longer than `pulumi up` should);
            # on delete, the instances are protected from scale-in, so only a forced delete ends them.
            wait_for_capacity_timeout="0", force_delete=True,
            tags=[aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                  for key, value in group.tags.items()],
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, ignore_changes=["desired_capacity"],
                                        delete_before_replace=True),  # a fixed name
        )
