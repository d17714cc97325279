"""Contract: the replica groups the prod stack declares are the groups the `aws` provider would create and
drive for the same deployments. Three views must agree: the Pulumi program rendered under mocks, the
shared description (`inferstack.providers.aws_groups`), and the provider itself, configured from the
control plane's task definition as the program renders it and driven against the moto server."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from program_harness import ROOT, Program

from inferstack.clock import SystemClock
from inferstack.declared.stackfile import load_stack_file
from inferstack.hardware import aws_instance_type
from inferstack.providers.aws import AwsProvider, AwsProviderConfig
from inferstack.providers.aws_groups import DEPLOYMENT_TAG, PROFILE_TAG, parameter_name, replica_groups
from inferstack.settings import Settings

PROD = load_stack_file(ROOT / "stacks/Pulumi.prod.yaml")
Tags = dict[str, tuple[str, bool]]


def declared_groups(prod: Program) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["name"]: r["inputs"] for r in prod.of_type("aws:autoscaling/group:Group")}


def declared_documents(prod: Program) -> dict[str, str]:
    """SSM parameter name -> the launch document Pulumi writes there."""
    return {r["inputs"]["name"]: r["inputs"]["insecureValue"] for r in prod.of_type("aws:ssm/parameter:Parameter")}


def deployment_ids(prod: Program) -> dict[str, str]:
    return {d["deployment"]: d["deployment_id"] for d in map(json.loads, declared_documents(prod).values())}


def task_environment(prod: Program) -> dict[str, str]:
    (task,) = prod.of_type("aws:ecs/taskDefinition:TaskDefinition")
    container = json.loads(task["inputs"]["containerDefinitions"])[0]
    return {e["name"]: e["value"] for e in container["environment"]}


def pulumi_tags(group: dict[str, Any]) -> Tags:
    return {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in group["tags"]}


def aws_tags(group: dict[str, Any]) -> Tags:
    return {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}


def test_the_program_renders_the_shared_description(prod: Program) -> None:
    environment = task_environment(prod)
    ids = deployment_ids(prod)
    templates = {r["inputs"]["tags"][PROFILE_TAG]: f"{r['name']}-id"
                 for r in prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    declared = declared_groups(prod)
    expected = [group for spec in PROD.deployments for group in replica_groups(
        "prod", spec.name or "", spec, deployment_id=ids[spec.name or ""],
        launch_template_id=templates[spec.hardware_profile],
        instance_type=aws_instance_type(spec.hardware_profile, spec.gpus_per_replica) or "")]

    assert sorted(declared) == sorted(g.name for g in expected)
    for group in expected:
        inputs = declared[group.name]
        assert pulumi_tags(inputs) == {k: (v, True) for k, v in group.tags.items()}, group.name
        assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (
            group.min_size, group.max_size, group.declared_desired_capacity)
        assert (inputs["healthCheckType"], inputs["healthCheckGracePeriod"]) == (
            group.health_check_type, group.health_check_grace_period_s)
        assert inputs["protectFromScaleIn"] is group.protect_from_scale_in
        assert inputs["capacityRebalance"] is group.capacity_rebalance
        policy = inputs["mixedInstancesPolicy"]
        assert policy["launchTemplate"] == {
            "launchTemplateSpecification": {"launchTemplateId": group.launch_template_id,
                                            "version": group.launch_template_version},
            "overrides": [{"instanceType": group.instance_type}]}
        assert policy["instancesDistribution"] == {
            "onDemandBaseCapacity": group.on_demand_base_capacity,
            "onDemandPercentageAboveBaseCapacity": group.on_demand_percentage_above_base_capacity,
            "spotAllocationStrategy": group.spot_allocation_strategy}
    # The control plane is told the prefix the program writes the launch documents under.
    assert sorted(declared_documents(prod)) == sorted(
        parameter_name(environment["INFERSTACK_AWS_PARAMETER_PREFIX"], spec.name or "") for spec in PROD.deployments)


@pytest.fixture
def prod_account(moto_reset: str, prod: Program) -> AwsProviderConfig:
    """A moto account with the prod stack's launch templates and a private subnet, and the provider's
    settings as the program renders them into the control plane's task (ids swapped for moto's)."""
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_reset)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm*"]}])[
        "Images"][0]["ImageId"]
    templates = {}
    for declared in prod.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        inputs = declared["inputs"]
        templates[inputs["tags"][PROFILE_TAG]] = ec2.create_launch_template(
            LaunchTemplateName=declared["name"], LaunchTemplateData={
                "ImageId": ami, "InstanceType": inputs["instanceType"], "UserData": inputs["userData"],
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                    {"Key": k, "Value": v} for k, v in inputs["tags"].items()]}]},
        )["LaunchTemplate"]["LaunchTemplateId"]
    return AwsProviderConfig.from_settings(Settings.from_env({
        **task_environment(prod), "AWS_ENDPOINT_URL": moto_reset,
        "INFERSTACK_AWS_LAUNCH_TEMPLATES": json.dumps(templates), "INFERSTACK_AWS_SUBNETS": subnet}))


async def test_the_provider_creates_and_fills_the_groups_the_program_declares(
        prod: Program, prod_account: AwsProviderConfig, moto_reset: str) -> None:
    provider = AwsProvider(prod_account, SystemClock(), poll_s=0.02, capacity_timeout_s=0.3, launch_timeout_s=3.0)
    ids = deployment_ids(prod)
    try:
        for spec in PROD.deployments:
            assert spec.name
            await provider.start(ids[spec.name], spec.name, f"rep-{spec.name}", spec, "unused-replica-key")

        asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=moto_reset)
        ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_reset)
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_reset)
        created = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
        declared = declared_groups(prod)
        assert sorted(created) == sorted(declared)
        for name, group in created.items():
            inputs = declared[name]
            assert aws_tags(group) == pulumi_tags(inputs), name
            assert (group["MinSize"], group["MaxSize"]) == (inputs["minSize"], inputs["maxSize"])
            assert (group["HealthCheckType"], group["HealthCheckGracePeriod"]) == (
                inputs["healthCheckType"], inputs["healthCheckGracePeriod"])
            assert group["NewInstancesProtectedFromScaleIn"] is inputs["protectFromScaleIn"]
            policy, declared_policy = group["MixedInstancesPolicy"], inputs["mixedInstancesPolicy"]
            assert policy["LaunchTemplate"]["Overrides"] == [
                {"InstanceType": o["instanceType"]} for o in declared_policy["launchTemplate"]["overrides"]]
            distribution = declared_policy["instancesDistribution"]
            assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == distribution[
                "onDemandPercentageAboveBaseCapacity"]
            assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == distribution["spotAllocationStrategy"]

        # Same parameter names and, byte for byte, the same launch documents: so the provider adopts
        # the instances Pulumi's first desired capacity launched instead of replacing them as stale.
        written = {p["Name"]: ssm.get_parameter(Name=p["Name"])["Parameter"]["Value"]
                   for p in ssm.describe_parameters()["Parameters"]}
        assert written == declared_documents(prod)

        # What the boot script reads on each instance: its deployment tag, and that deployment's document.
        read_by_boot_script = parameter_name(prod_account.parameter_prefix, '"$DEPLOYMENT"')
        for reservation in ec2.describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
                script = base64.b64decode(ec2.describe_instance_attribute(
                    InstanceId=instance["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
                assert f"tags/instance/{DEPLOYMENT_TAG})" in script
                assert f"--name {read_by_boot_script}" in script
                assert parameter_name(prod_account.parameter_prefix, tags[DEPLOYMENT_TAG]) in written
    finally:
        await provider.close()
