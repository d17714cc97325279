"""Contract: the replica groups the prod stack declares are the groups the `aws` provider would create and
drive for the same deployments, and each has one owner: Pulumi creates a declared deployment's groups
and launch document (the provider waits for them and only scales them), the provider creates an
API-made deployment's under names Pulumi never uses. Three views must agree: the Pulumi program
rendered under mocks, the shared description (`inferstack.providers.aws_groups`), and the provider
itself, configured from the control plane's task definition as the program renders it and driven
against the moto server."""

from __future__ import annotations

import asyncio
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
from inferstack.providers.aws_groups import DOCUMENT_TAG, PROFILE_TAG, parameter_name, replica_groups
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


def create_as_pulumi(prod: Program, account: AwsProviderConfig, endpoint: str) -> None:
    """What `pulumi up` does after the deployments exist: the launch documents, then the groups, as the
    program declares them (template ids swapped for moto's; numbers are floats on the wire). Plain
    creates: any name the controller had taken first fails here, as ParameterAlreadyExists would."""
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
    asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=endpoint)
    for name, value in declared_documents(prod).items():
        ssm.put_parameter(Name=name, Value=value, Type="String", Tier="Standard")
    profile_of = {f"{r['name']}-id": r["inputs"]["tags"][PROFILE_TAG]
                  for r in prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for name, inputs in declared_groups(prod).items():
        policy = inputs["mixedInstancesPolicy"]
        template = policy["launchTemplate"]["launchTemplateSpecification"]
        distribution = policy["instancesDistribution"]
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=int(inputs["minSize"]), MaxSize=int(inputs["maxSize"]),
            DesiredCapacity=int(inputs["desiredCapacity"]), VPCZoneIdentifier=",".join(account.subnets),
            MixedInstancesPolicy={
                "LaunchTemplate": {"LaunchTemplateSpecification": {
                    "LaunchTemplateId": account.launch_templates[profile_of[template["launchTemplateId"]]],
                    "Version": template["version"]},
                    "Overrides": [{"InstanceType": o["instanceType"]}
                                  for o in policy["launchTemplate"]["overrides"]]},
                "InstancesDistribution": {
                    "OnDemandBaseCapacity": int(distribution["onDemandBaseCapacity"]),
                    "OnDemandPercentageAboveBaseCapacity": int(distribution["onDemandPercentageAboveBaseCapacity"]),
                    "SpotAllocationStrategy": distribution["spotAllocationStrategy"]}},
            HealthCheckType=inputs["healthCheckType"], HealthCheckGracePeriod=int(inputs["healthCheckGracePeriod"]),
            NewInstancesProtectedFromScaleIn=inputs["protectFromScaleIn"],
            Tags=[{"Key": t["key"], "Value": t["value"], "PropagateAtLaunch": t["propagateAtLaunch"],
                   "ResourceId": name, "ResourceType": "auto-scaling-group"} for t in inputs["tags"]])


async def test_declared_groups_are_pulumis_and_api_made_ones_the_controllers(
        prod: Program, prod_account: AwsProviderConfig, moto_reset: str) -> None:
    assert prod_account.declared == {spec.name for spec in PROD.deployments}, "infra tells the controller"
    provider = AwsProvider(prod_account, SystemClock(), poll_s=0.05, capacity_timeout_s=0.3, launch_timeout_s=20.0)
    ids = deployment_ids(prod)
    asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=moto_reset)
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_reset)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_reset)
    try:
        # The deployments exist (Pulumi created them through the API) and the controller wants replicas
        # before Pulumi has created their groups: it waits, and creates nothing of its own meanwhile.
        starts = {spec.name: asyncio.create_task(provider.start(ids[spec.name or ""], spec.name or "",
                                                                f"rep-{spec.name}", spec, "unused"))
                  for spec in PROD.deployments}
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in starts.values())
        assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
        assert ssm.describe_parameters()["Parameters"] == []

        create_as_pulumi(prod, prod_account, moto_reset)  # would fail on a name the controller took
        handles = {name: await asyncio.wait_for(task, 20) for name, task in starts.items()}
        groups = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
        assert sorted(groups) == sorted(declared_groups(prod)), "the controller created no declared group"
        for spec in PROD.deployments:
            first = f"inferstack-prod-{spec.name}-{'spot' if spec.allow_spot else 'on-demand'}"
            # It adopted the instance Pulumi's first desired capacity launched instead of growing the group.
            assert groups[first]["DesiredCapacity"] == spec.min_replicas == 1
            assert handles[spec.name].url.startswith("http://10.0.1.")

        # A deployment made through the API: the controller's own group and document, never a Pulumi name.
        adhoc = PROD.deployments[0].model_copy(update={"name": "adhoc", "allow_spot": False})
        await provider.start("dep-adhoc", "adhoc", "rep-adhoc", adhoc, "unused")
        mine = {g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
        mine -= set(groups)
        assert mine == {"inferstack-prod-api.adhoc-on-demand"}
        written = {p["Name"] for p in ssm.describe_parameters()["Parameters"]}
        assert written - set(declared_documents(prod)) == {"/inferstack/prod/deployments/api.adhoc"}

        # What the boot script reads on each instance: its document tag, and the document it names.
        read_by_boot_script = parameter_name(prod_account.parameter_prefix, '"$DOCUMENT"')
        for reservation in ec2.describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
                script = base64.b64decode(ec2.describe_instance_attribute(
                    InstanceId=instance["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
                assert f"tags/instance/{DOCUMENT_TAG})" in script and f"--name {read_by_boot_script}" in script
                assert parameter_name(prod_account.parameter_prefix, tags[DOCUMENT_TAG]) in written
    finally:
        await provider.close()
