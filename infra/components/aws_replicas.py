"""Per declared deployment on AWS: its launch document and the Auto Scaling group(s) of its replicas.

The group's capacity belongs to the controller (it sets the desired capacity from its decisions and
terminates the drained instance it chose), so Pulumi ignores `desired_capacity` after creation:
without that, each `pulumi up` would reset the count and fight the autoscaler.

Spot with on-demand fallback: a deployment with `allow_spot` gets two groups on the same launch
template, `-spot` (spot only, price-capacity-optimized) and `-on-demand` (empty at first). The
controller grows the spot group first and, when spot capacity does not come within its wait, the
on-demand one; other deployments get the on-demand group only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.replica import instance_type
from deployment_resource import InferenceDeployment
from inferstack.engines.container import launch_document
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
    vllm_image: str
    runtime_image: str


def group_name(stack: str, deployment: str, capacity: str) -> str:
    return f"inferstack-{stack}-{deployment}-{capacity}"


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
        tags = {"inferstack:stack": args.stack, "inferstack:deployment": spec.name}
        document = aws.ssm.Parameter(
            f"{name}-{spec.name}", name=f"{args.parameter_prefix}/{spec.name}", type="String", tier="Standard",
            insecure_value=resource.deployment_id.apply(
                lambda deployment_id: launch_document(spec, deployment_id, spec.name or deployment_id, args.vllm_image,
                                                          args.runtime_image)),
            description=f"inferstack {args.stack}: what replicas of {spec.name} run (no secrets)",
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        capacities = ["spot", "on-demand"] if spec.allow_spot else ["on-demand"]
        groups = []
        for capacity in capacities:
            # The first count only; afterwards the controller's (see ignore_changes).
            first = spec.min_replicas if capacity == capacities[0] else 0
            groups.append(aws.autoscaling.Group(
                f"{name}-{spec.name}-{capacity}",
                name=group_name(args.stack, spec.name, capacity),
                min_size=0, max_size=spec.max_replicas, desired_capacity=first,
                vpc_zone_identifiers=args.private_subnet_ids,
                mixed_instances_policy=aws.autoscaling.GroupMixedInstancesPolicyArgs(
                    launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                        launch_template_specification=aws.autoscaling.
                        GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                            launch_template_id=args.launch_template_ids[spec.hardware_profile], version="$Latest"),
                        overrides=[aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(
                            instance_type=instance_type(spec))]),
                    instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                        on_demand_base_capacity=0,
                        on_demand_percentage_above_base_capacity=0 if capacity == "spot" else 100,
                        spot_allocation_strategy="price-capacity-optimized")),
                # Cold start (image pull, weights download, load) takes minutes before /health answers.
                health_check_type="EC2", health_check_grace_period=900,
                # The controller picks which replica goes (drained first); the group must not pick.
                protect_from_scale_in=True,
                capacity_rebalance=capacity == "spot",
                tags=[aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
                      for k, v in {**tags, "inferstack:capacity": capacity}.items()],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[document, resource],
                                            ignore_changes=["desired_capacity"]),
            ))
        return groups
