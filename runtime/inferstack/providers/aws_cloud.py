"""The boto3 calls of the `aws` provider: Auto Scaling groups, EC2 instances, SSM launch documents.

Thin on purpose: every decision is made by the caller (`aws_claims`, `aws`). Each blocking boto3 call
runs in a thread (`asyncio.to_thread`); the clients are created once. The requests that create and
repoint a group are rendered from the shared description (`aws_groups.ReplicaGroup`) by pure functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from inferstack.providers.aws_groups import DEPLOYMENT_ID_TAG, PARAMETER_TIER, PARAMETER_TYPE, ReplicaGroup

log = logging.getLogger("inferstack.providers.aws")

DESCRIBE_FILTER_LIMIT = 200  # EC2 accepts at most 200 values in one filter


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def launch_template_request(group: ReplicaGroup[str]) -> dict[str, Any]:
    return {"LaunchTemplateSpecification": {"LaunchTemplateId": group.launch_template_id,
                                            "Version": group.launch_template_version},
            "Overrides": [{"InstanceType": group.instance_type}]}


def instances_distribution_request(group: ReplicaGroup[str]) -> dict[str, Any]:
    return {"OnDemandBaseCapacity": group.on_demand_base_capacity,
            "OnDemandPercentageAboveBaseCapacity": group.on_demand_percentage_above_base_capacity,
            "SpotAllocationStrategy": group.spot_allocation_strategy}


def create_group_request(group: ReplicaGroup[str], subnets: list[str]) -> dict[str, Any]:
    """`CreateAutoScalingGroup` of an empty group: the provider grows it one claim at a time."""
    return {
        "AutoScalingGroupName": group.name, "MinSize": group.min_size, "MaxSize": group.max_size,
        "DesiredCapacity": 0, "VPCZoneIdentifier": ",".join(subnets),
        "MixedInstancesPolicy": {"LaunchTemplate": launch_template_request(group),
                                 "InstancesDistribution": instances_distribution_request(group)},
        "HealthCheckType": group.health_check_type, "HealthCheckGracePeriod": group.health_check_grace_period_s,
        "NewInstancesProtectedFromScaleIn": group.protect_from_scale_in,
        "CapacityRebalance": group.capacity_rebalance,
        "Tags": [{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": group.name,
                  "ResourceType": "auto-scaling-group"} for k, v in group.tags.items()],
    }


def repoint_request(group: ReplicaGroup[str], described: dict[str, Any]) -> dict[str, Any] | None:
    """`UpdateAutoScalingGroup` pointing an existing group at the description's launch template and
    instance type, or None when it launches those already. Its instance distribution is kept."""
    policy = described.get("MixedInstancesPolicy") or {}
    current = policy.get("LaunchTemplate", {})
    if (current.get("LaunchTemplateSpecification", {}).get("LaunchTemplateId") == group.launch_template_id
            and [o.get("InstanceType") for o in current.get("Overrides", [])] == [group.instance_type]):
        return None
    return {"AutoScalingGroupName": group.name, "MixedInstancesPolicy": {
        "LaunchTemplate": launch_template_request(group),
        "InstancesDistribution": policy.get("InstancesDistribution", instances_distribution_request(group))}}


class AwsCloud:
    """The Auto Scaling, EC2 and SSM clients of one region (or an AWS-compatible endpoint)."""

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        session = boto3.session.Session(region_name=region)
        retries = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30)
        self._asg = session.client("autoscaling", endpoint_url=endpoint_url, config=retries)
        self._ec2 = session.client("ec2", endpoint_url=endpoint_url, config=retries)
        self._ssm = session.client("ssm", endpoint_url=endpoint_url, config=retries)

    # --- groups --------------------------------------------------------------------------------------
    async def describe_group(self, group: str) -> dict[str, Any] | None:
        found = await _call(self._asg.describe_auto_scaling_groups, AutoScalingGroupNames=[group])
        groups = found["AutoScalingGroups"]
        return groups[0] if groups else None

    async def ensure_group(self, group: ReplicaGroup[str], subnets: list[str]) -> None:
        """Create the group unless it exists. An existing group launching from another template or
        instance type (the deployment's hardware profile or GPU count was updated) is pointed at the
        right ones: its new instances must be the new shape, while the old replicas drain."""
        described = await self.describe_group(group.name)
        if described is not None:
            update = repoint_request(group, described)
            if update is not None:
                log.info("pointing %s at launch template %s, %s", group.name, group.launch_template_id,
                         group.instance_type)
                await _call(self._asg.update_auto_scaling_group, **update)
            return
        try:
            await _call(self._asg.create_auto_scaling_group, **create_group_request(group, subnets))
            log.info("created Auto Scaling group %s", group.name)
        except ClientError as exc:
            if error_code(exc) != "AlreadyExists":  # another control plane created it first: fine
                raise

    async def delete_group(self, group: str, deployment_id: str) -> bool:
        """Delete the group, and any instance still in it, if it is deployment `deployment_id`'s (by its tag:
        a group of that name may be a newer deployment's). True if it was deleted."""
        described = await self.describe_group(group)
        tags = {t["Key"]: t["Value"] for t in (described or {}).get("Tags", [])}
        if described is None or tags.get(DEPLOYMENT_ID_TAG) != deployment_id:
            return False
        members = [i["InstanceId"] for i in described.get("Instances", [])]
        if members:  # ForceDelete would end them too; said here, so no emulator has to know it
            await _call(self._ec2.terminate_instances, InstanceIds=members)
        await _call(self._asg.delete_auto_scaling_group, AutoScalingGroupName=group, ForceDelete=True)
        log.info("deleted Auto Scaling group %s", group)
        return True

    async def set_desired_capacity(self, group: str, desired: int) -> None:
        await _call(self._asg.set_desired_capacity, AutoScalingGroupName=group, DesiredCapacity=desired,
                    HonorCooldown=False)

    async def set_max_size(self, group: str, max_size: int) -> None:
        await _call(self._asg.update_auto_scaling_group, AutoScalingGroupName=group, MaxSize=max_size)

    async def terminate_in_group(self, instance_id: str) -> None:
        """Terminate a group member with decrement; tolerate it having left the group meanwhile."""
        try:
            await _call(self._asg.terminate_instance_in_auto_scaling_group, InstanceId=instance_id,
                        ShouldDecrementDesiredCapacity=True)
        except ClientError as exc:
            if error_code(exc) != "ValidationError":  # "not found": it left the group meanwhile
                raise

    # --- instances -----------------------------------------------------------------------------------
    async def describe_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Instances by id; an id EC2 does not know is simply absent. (A filter, not InstanceIds:
        with InstanceIds one unknown id fails the whole call.)"""

        def describe() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            paginator = self._ec2.get_paginator("describe_instances")
            for start in range(0, len(ids), DESCRIBE_FILTER_LIMIT):
                chunk = ids[start:start + DESCRIBE_FILTER_LIMIT]
                for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": chunk}]):
                    for reservation in page["Reservations"]:
                        for instance in reservation["Instances"]:
                            out[instance["InstanceId"]] = instance
            return out

        return await asyncio.to_thread(describe) if ids else {}

    async def tag_instance(self, instance_id: str, tags: dict[str, str]) -> None:
        await _call(self._ec2.create_tags, Resources=[instance_id],
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    async def terminate_instance(self, instance_id: str) -> None:
        await _call(self._ec2.terminate_instances, InstanceIds=[instance_id])

    # --- launch documents ----------------------------------------------------------------------------
    async def read_document(self, parameter: str) -> str | None:
        try:
            return str((await _call(self._ssm.get_parameter, Name=parameter))["Parameter"]["Value"])
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
        return None

    async def delete_document(self, parameter: str) -> None:
        try:
            await _call(self._ssm.delete_parameter, Name=parameter)
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise

    async def ensure_document(self, parameter: str, document: str) -> bool:
        """Write the launch document unless SSM already holds exactly it; True if it was (re)written."""
        try:
            current = await _call(self._ssm.get_parameter, Name=parameter)
            if current["Parameter"]["Value"] == document:
                return False
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
        await _call(self._ssm.put_parameter, Name=parameter, Value=document, Type=PARAMETER_TYPE,
                    Tier=PARAMETER_TIER, Overwrite=True)
        return True


async def _call(function: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, **kwargs)
