"""The aws provider against a real moto server over HTTP (no patched functions): replicas become
instances in per-deployment Auto Scaling groups, launched from the profile's launch template."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from inferstack.clock import SystemClock
from inferstack.providers.aws import AwsProvider, AwsProviderConfig
from inferstack.providers.aws_groups import (
    DEPLOYMENT_ID_TAG,
    DEPLOYMENT_TAG,
    PROFILE_TAG,
    REPLICA_TAG,
    STACK_TAG,
    group_name,
    parameter_prefix,
)
from inferstack.providers.base import ProviderError, ReplicaHandle
from inferstack.settings import Settings
from inferstack.spec import DeploymentSpec

STACK = "test"
PREFIX = parameter_prefix(STACK)
TOKEN = "hf_TOKEN_that_must_never_leave_the_control_plane"
REPLICA_KEY = "replica-key-that-must-never-be-written"
USER_DATA = "#!/bin/bash\n# reads its deployment from the inferstack:deployment tag and SSM\n"


@dataclass
class Cloud:
    ec2: Any
    asg: Any
    ssm: Any
    config: AwsProviderConfig

    def group(self, deployment: str, capacity: str = "on-demand") -> dict[str, Any]:
        found = self.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group_name(STACK, deployment, capacity, "controller")])["AutoScalingGroups"]
        assert found, f"no {capacity} group for {deployment}"
        return found[0]

    def members(self, deployment: str, capacity: str = "on-demand") -> list[str]:
        return sorted(m["InstanceId"] for m in self.group(deployment, capacity)["Instances"])

    def instance(self, instance_id: str) -> dict[str, Any]:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    def tags(self, instance_id: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.instance(instance_id).get("Tags", [])}

    def instance_of(self, handle: ReplicaHandle) -> str:
        found = self.ec2.describe_instances(Filters=[{"Name": f"tag:{REPLICA_TAG}", "Values": [handle.replica_id]}])
        ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
        assert len(ids) == 1, ids
        return ids[0]


@pytest.fixture
def cloud(moto_reset: str) -> Cloud:
    """A VPC with a private subnet and one launch template per GPU profile, as `infra` creates them."""
    clients = {name: boto3.client(name, region_name="us-east-1", endpoint_url=moto_reset)
               for name in ("ec2", "autoscaling", "ssm")}
    ec2 = clients["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    # One of moto's default AMIs (filtered: listing all ~1,300 of them takes most of a second).
    ami = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm*"]}])[
        "Images"][0]["ImageId"]
    templates = {}
    for profile, instance_type in {"gpu.l4": "g6.xlarge", "gpu.a10g": "g5.xlarge"}.items():
        templates[profile] = ec2.create_launch_template(
            LaunchTemplateName=f"inferstack-{STACK}-{profile.replace('.', '-')}",
            LaunchTemplateData={"ImageId": ami, "InstanceType": instance_type,
                                "UserData": base64.b64encode(USER_DATA.encode()).decode(),
                                "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                                    {"Key": PROFILE_TAG, "Value": profile}]}]},
        )["LaunchTemplate"]["LaunchTemplateId"]
    config = config_from_env({
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_reset, "INFERSTACK_STACK": STACK,
        "INFERSTACK_AWS_LAUNCH_TEMPLATES": json.dumps(templates), "INFERSTACK_AWS_SUBNETS": subnet,
        "INFERSTACK_AWS_PARAMETER_PREFIX": PREFIX, "INFERSTACK_VLLM_IMAGE": "vllm/vllm-openai:v0.11.0",
        "INFERSTACK_RUNTIME_IMAGE": "ghcr.io/inferstack/inferstack:test"})
    return Cloud(ec2=ec2, asg=clients["autoscaling"], ssm=clients["ssm"], config=config)


def config_from_env(environ: dict[str, str]) -> AwsProviderConfig:
    return AwsProviderConfig.from_settings(Settings.from_env(environ))


def make_provider(cloud: Cloud, config: AwsProviderConfig | None = None, **timing: float) -> AwsProvider:
    # A launch is the moto server's work, seconds on a loaded machine; no test here waits for it to time out.
    options = {"poll_s": 0.02, "capacity_timeout_s": 0.3, "launch_timeout_s": 20.0, **timing}
    return AwsProvider(config or cloud.config, SystemClock(), **options)


@pytest.fixture
async def provider(cloud: Cloud) -> AsyncIterator[AwsProvider]:
    provider = make_provider(cloud)
    yield provider
    await provider.close()


def chat_spec(**changes: Any) -> DeploymentSpec:
    fields: dict[str, Any] = {"name": "chat", "hf_model_id": "acme/tiny-chat", "hardware_profile": "gpu.l4",
                              "min_replicas": 1, "max_replicas": 3, "max_model_len": 4096,
                              "engine_args": ["--dtype", "bfloat16"]}
    return DeploymentSpec(**{**fields, **changes})


async def start(provider: AwsProvider, replica_id: str, spec: DeploymentSpec | None = None,
                deployment_id: str = "dep-chat1") -> ReplicaHandle:
    spec = spec or chat_spec()
    return await provider.start(deployment_id, spec.name or deployment_id, replica_id, spec, REPLICA_KEY)


def private_ip(url: str) -> str:
    assert url.startswith("http://10.0.1.") and url.endswith(":8000"), url
    return url.removeprefix("http://").removesuffix(":8000")


# --- configuration ----------------------------------------------------------------------------------------


def test_config_reads_the_environment_and_names_what_is_missing() -> None:
    config = config_from_env({
        "AWS_DEFAULT_REGION": "eu-west-1", "INFERSTACK_STACK": "prod",
        "INFERSTACK_AWS_LAUNCH_TEMPLATES": '{"gpu.l4": "lt-1", "gpu.h100": "lt-2"}',
        "INFERSTACK_AWS_SUBNETS": "subnet-a, subnet-b"})
    assert config.region == "eu-west-1" and config.endpoint_url is None
    assert config.launch_templates == {"gpu.l4": "lt-1", "gpu.h100": "lt-2"}
    assert config.subnets == ["subnet-a", "subnet-b"]
    assert config.parameter_prefix == "/inferstack/prod/deployments"  # infra's parameter_prefix(stack)
    assert config.vllm_image.startswith("vllm/vllm-openai:")

    with pytest.raises(ValueError, match=r"INFERSTACK_STACK is not set.*INFERSTACK_AWS_SUBNETS is not set"):
        config_from_env({"AWS_REGION": "us-east-1", "INFERSTACK_AWS_LAUNCH_TEMPLATES": "{}"})
    with pytest.raises(ValueError, match="INFERSTACK_AWS_LAUNCH_TEMPLATES is not JSON"):
        config_from_env({"AWS_REGION": "us-east-1", "INFERSTACK_STACK": "s",
                                    "INFERSTACK_AWS_LAUNCH_TEMPLATES": "gpu.l4=lt-1",
                                    "INFERSTACK_AWS_SUBNETS": "subnet-a"})


# --- starting -----------------------------------------------------------------------------------------------


async def test_start_creates_the_group_scales_it_to_one_and_returns_the_instance_url(
        cloud: Cloud, provider: AwsProvider) -> None:
    handle = await start(provider, "rep-1")

    assert handle.replica_id == "rep-1" and handle.pid is None
    group = cloud.group("chat")
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 3, 1)
    policy = group["MixedInstancesPolicy"]["LaunchTemplate"]
    assert policy["LaunchTemplateSpecification"]["LaunchTemplateId"] == cloud.config.launch_templates["gpu.l4"]
    assert policy["Overrides"] == [{"InstanceType": "g6.xlarge"}]
    assert group["NewInstancesProtectedFromScaleIn"] is True  # the controller picks who goes
    assert {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}[DEPLOYMENT_TAG] == ("chat", True)

    (instance_id,) = cloud.members("chat")
    instance = cloud.instance(instance_id)
    assert handle.url == f"http://{instance['PrivateIpAddress']}:8000"
    private_ip(handle.url)
    tags = cloud.tags(instance_id)
    assert tags[DEPLOYMENT_TAG] == "chat"  # what the boot script reads to find its launch document
    assert tags[DEPLOYMENT_ID_TAG] == "dep-chat1" and tags[STACK_TAG] == STACK
    assert tags[REPLICA_TAG] == "rep-1"
    assert provider.exit_code(handle) is None


async def test_a_second_start_adds_a_second_instance(cloud: Cloud, provider: AwsProvider) -> None:
    first = await start(provider, "rep-1")
    second = await start(provider, "rep-2")

    assert cloud.group("chat")["DesiredCapacity"] == 2
    assert len(cloud.members("chat")) == 2
    assert private_ip(first.url) != private_ip(second.url)
    assert cloud.instance_of(first) != cloud.instance_of(second)


async def test_the_launch_document_carries_model_names_and_flags_and_no_secret(
        cloud: Cloud, provider: AwsProvider) -> None:
    spec = chat_spec(hf_token=SecretStr(TOKEN))
    handle = await start(provider, "rep-1", spec)

    value = cloud.ssm.get_parameter(Name=f"{PREFIX}/api.chat")["Parameter"]["Value"]
    document = json.loads(value)
    assert document["deployment"] == "chat" and document["deployment_id"] == "dep-chat1"
    assert document["image"] == "vllm/vllm-openai:v0.11.0" and document["port"] == 8000 and document["gpus"] == 1
    command = document["command"]
    assert command[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == "acme/tiny-chat"
    names = command.index("--served-model-name")
    assert command[names + 1:names + 3] == ["chat", "dep-chat1"]
    assert command[command.index("--max-model-len") + 1] == "4096"
    assert command[-2:] == ["--dtype", "bfloat16"]
    assert "HF_TOKEN" not in document["env"] and "VLLM_API_KEY" not in document["env"]

    # Neither secret anywhere the instance or an operator can read it.
    instance_id = cloud.instance_of(handle)
    user_data = cloud.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    template = cloud.ec2.describe_launch_template_versions(
        LaunchTemplateId=cloud.config.launch_templates["gpu.l4"])["LaunchTemplateVersions"]
    readable = [value, json.dumps(cloud.instance(instance_id), default=str), json.dumps(cloud.group("chat"),
                default=str), base64.b64decode(user_data["UserData"]["Value"]).decode(),
                json.dumps(template, default=str),
                json.dumps(cloud.ssm.describe_parameters()["Parameters"], default=str)]
    for text in readable:
        assert TOKEN not in text and REPLICA_KEY not in text


async def test_an_unknown_profile_fails_clearly_and_creates_nothing(cloud: Cloud, provider: AwsProvider) -> None:
    with pytest.raises(ProviderError, match=r"'gpu.h100' has no launch template .*gpu.a10g, gpu.l4"):
        await start(provider, "rep-1", chat_spec(hardware_profile="gpu.h100", gpus_per_replica=8))

    assert cloud.asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert cloud.ssm.describe_parameters()["Parameters"] == []


async def test_an_aws_error_is_a_provider_error_and_changes_nothing(cloud: Cloud) -> None:
    broken = cloud.config.model_copy(update={"launch_templates": {"gpu.l4": "lt-0123456789abcdef0"}})
    provider = make_provider(cloud, broken)
    with pytest.raises(ProviderError, match=r"AWS: .*InvalidLaunchTemplateId"):
        await start(provider, "rep-1")
    await provider.close()

    assert cloud.asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert cloud.ssm.describe_parameters()["Parameters"] == []


# --- spot -----------------------------------------------------------------------------------------------------


async def test_allow_spot_grows_the_spot_group_first(cloud: Cloud, provider: AwsProvider) -> None:
    handle = await start(provider, "rep-1", chat_spec(allow_spot=True))

    spot, on_demand = cloud.group("chat", "spot"), cloud.group("chat", "on-demand")
    assert spot["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert spot["DesiredCapacity"] == 1 and on_demand["DesiredCapacity"] == 0
    assert cloud.members("chat", "spot") == [cloud.instance_of(handle)]
    assert cloud.members("chat", "on-demand") == []


def starve_spot(cloud: Cloud) -> None:
    """A spot group as Pulumi declares it, except that its split is 50/50: moto rounds half of one
    instance down to none, so growing this group launches nothing, which is what a spot shortage
    looks like through the API (desired capacity up, no instance)."""
    cloud.asg.create_auto_scaling_group(
        AutoScalingGroupName=group_name(STACK, "chat", "spot", "controller"), MinSize=0, MaxSize=3, DesiredCapacity=0,
        VPCZoneIdentifier=cloud.config.subnets[0], NewInstancesProtectedFromScaleIn=True,
        MixedInstancesPolicy={"LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": cloud.config.launch_templates["gpu.l4"],
                                            "Version": "$Latest"},
            "Overrides": [{"InstanceType": "g6.xlarge"}]},
            "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 50}},
        Tags=[{"Key": DEPLOYMENT_TAG, "Value": "chat", "PropagateAtLaunch": True}])


async def test_without_spot_capacity_it_falls_back_to_on_demand(cloud: Cloud, provider: AwsProvider) -> None:
    starve_spot(cloud)

    started = time.monotonic()
    handle = await start(provider, "rep-1", chat_spec(allow_spot=True))

    assert time.monotonic() - started >= 0.3  # it waited capacity_timeout_s for spot first
    assert cloud.members("chat", "on-demand") == [cloud.instance_of(handle)]
    assert cloud.group("chat", "on-demand")["DesiredCapacity"] == 1
    assert cloud.group("chat", "spot")["DesiredCapacity"] == 0  # the unmet spot request was withdrawn


async def test_a_start_cancelled_while_waiting_gives_its_capacity_back(cloud: Cloud) -> None:
    """The controller cancels its loop (and so a start in progress) when the control plane stops."""
    starve_spot(cloud)
    provider = make_provider(cloud, capacity_timeout_s=30)
    waiting = asyncio.create_task(start(provider, "rep-1", chat_spec(allow_spot=True)))
    deadline = time.monotonic() + 5
    while cloud.group("chat", "spot")["DesiredCapacity"] == 0:
        assert time.monotonic() < deadline, "the start never asked the spot group for capacity"
        await asyncio.sleep(0.02)

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert cloud.group("chat", "spot")["DesiredCapacity"] == 0
    assert cloud.group("chat", "on-demand")["DesiredCapacity"] == 0
    await provider.close()


# --- stopping and exits ------------------------------------------------------------------------------------


async def test_stop_terminates_exactly_that_instance_and_decrements(cloud: Cloud, provider: AwsProvider) -> None:
    first = await start(provider, "rep-1")
    second = await start(provider, "rep-2")
    first_id, second_id = cloud.instance_of(first), cloud.instance_of(second)

    await provider.stop(first)

    assert cloud.instance(first_id)["State"]["Name"] == "terminated"
    assert cloud.instance(second_id)["State"]["Name"] == "running"
    assert cloud.group("chat")["DesiredCapacity"] == 1
    assert cloud.members("chat") == [second_id]
    await provider.stop(first)  # already gone: nothing to do, no error
    assert cloud.group("chat")["DesiredCapacity"] == 1


async def wait_exit(provider: AwsProvider, handle: ReplicaHandle, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := provider.exit_code(handle)) is None:
        assert time.monotonic() < deadline, "exit_code never reported the lost instance"
        await asyncio.sleep(0.02)
    return code


async def test_an_instance_lost_out_of_band_exits_and_its_replacement_is_adopted(
        cloud: Cloud, provider: AwsProvider) -> None:
    lost = await start(provider, "rep-1")
    kept = await start(provider, "rep-2")
    lost_id = cloud.instance_of(lost)

    cloud.ec2.terminate_instances(InstanceIds=[lost_id])  # e.g. a spot interruption

    assert await wait_exit(provider, lost) == 1
    assert provider.exit_code(kept) is None
    # The group replaced the lost instance by itself (moto does so on the next describe, as AWS does
    # within a minute): the controller's replacement replica takes that instance instead of growing
    # the group, so no instance is left running unclaimed.
    replacement = await start(provider, "rep-3")
    assert cloud.group("chat")["DesiredCapacity"] == 2
    assert sorted([cloud.instance_of(kept), cloud.instance_of(replacement)]) == cloud.members("chat")
    assert lost_id not in cloud.members("chat")


async def test_a_new_hardware_shape_repoints_the_group(cloud: Cloud, provider: AwsProvider) -> None:
    """An update of the hardware profile drains the old replicas and starts new ones in the same group."""
    old = await start(provider, "rep-1")
    new = await start(provider, "rep-2", chat_spec(hardware_profile="gpu.a10g"))

    policy = cloud.group("chat")["MixedInstancesPolicy"]["LaunchTemplate"]
    assert policy["LaunchTemplateSpecification"]["LaunchTemplateId"] == cloud.config.launch_templates["gpu.a10g"]
    assert policy["Overrides"] == [{"InstanceType": "g5.xlarge"}]
    assert cloud.instance(cloud.instance_of(new))["InstanceType"] == "g5.xlarge"
    assert cloud.instance(cloud.instance_of(old))["InstanceType"] == "g6.xlarge"  # draining, still serving


# --- the control plane going away ----------------------------------------------------------------------------


async def test_a_stopping_control_plane_leaves_its_replicas_for_the_next_to_adopt(cloud: Cloud) -> None:
    """Every deploy replaces the control plane's tasks: its replicas (warm GPU instances) stay, and the
    next control plane's starts adopt them instead of cold-starting new ones."""
    old = make_provider(cloud)
    first, second = await start(old, "rep-1"), await start(old, "rep-2")
    spot = await start(old, "rep-3", chat_spec(name="embed", allow_spot=True), deployment_id="dep-embed1")
    kept = sorted(cloud.instance_of(h) for h in (first, second))
    spot_id = cloud.instance_of(spot)

    await old.close()

    assert cloud.members("chat") == kept and cloud.group("chat")["DesiredCapacity"] == 2
    assert cloud.instance(spot_id)["State"]["Name"] == "running"
    # Where the replica's output stays readable, also after its instance is gone (the boot script's stream).
    assert first.log_path == f"cloudwatch:/inferstack/{STACK}/replicas:{cloud.instance_of(first)}"
    with pytest.raises(ProviderError, match="closed"):
        await start(old, "rep-4")

    successor = make_provider(cloud)
    adopted = [await start(successor, "rep-5"), await start(successor, "rep-6")]
    assert sorted(cloud.instance_of(h) for h in adopted) == kept, "the same instances, not new ones"
    assert cloud.group("chat")["DesiredCapacity"] == 2
    await successor.stop(adopted[0])
    assert cloud.group("chat")["DesiredCapacity"] == 1
    await successor.close()


async def test_a_new_control_plane_adopts_running_replicas_instead_of_leaking_them(cloud: Cloud) -> None:
    crashed = make_provider(cloud)  # dies without close(): its instance keeps running
    old = await start(crashed, "rep-old")
    old_id = cloud.instance_of(old)

    successor = make_provider(cloud)
    new = await start(successor, "rep-new")

    assert cloud.members("chat") == [old_id] and cloud.group("chat")["DesiredCapacity"] == 1
    assert cloud.tags(old_id)[REPLICA_TAG] == "rep-new" and new.url == old.url
    # The crashed plane's late close() (an ECS rolling deployment's old task) leaves it running.
    await crashed.close()
    assert cloud.instance(old_id)["State"]["Name"] == "running"
    await successor.close()


async def test_an_instance_from_an_outdated_launch_document_is_replaced_not_adopted(cloud: Cloud) -> None:
    crashed = make_provider(cloud)
    old_id = cloud.instance_of(await start(crashed, "rep-old"))

    successor = make_provider(cloud)
    new = await start(successor, "rep-new", chat_spec(engine_args=["--dtype", "float16"]))

    assert cloud.instance(old_id)["State"]["Name"] == "terminated"
    assert cloud.members("chat") == [cloud.instance_of(new)] and cloud.group("chat")["DesiredCapacity"] == 1
    document = json.loads(cloud.ssm.get_parameter(Name=f"{PREFIX}/api.chat")["Parameter"]["Value"])
    assert document["command"][-1] == "float16"
    await successor.close()


async def test_a_deleted_deployments_groups_and_launch_document_go_and_no_other_deployments(
        cloud: Cloud, provider: AwsProvider) -> None:
    await start(provider, "rep-1", chat_spec(allow_spot=True))
    other = await start(provider, "rep-2", chat_spec(name="other"), deployment_id="dep-other")
    left_over = cloud.members("chat", "spot") + cloud.members("chat")
    assert left_over  # an instance no replica holds any more: the delete must not leave it running
    documents = {p["Name"] for p in cloud.ssm.get_parameters_by_path(Path=PREFIX)["Parameters"]}
    assert documents == {f"{PREFIX}/api.chat", f"{PREFIX}/api.other"}

    await provider.remove_deployment("dep-chat-recreated", "chat")  # a newer deployment of that name: not its groups
    assert cloud.group("chat", "spot")
    await provider.remove_deployment("dep-chat1", "chat")

    names = {g["AutoScalingGroupName"] for g in cloud.asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert names == {group_name(STACK, "other", "on-demand", "controller")}
    assert {p["Name"] for p in cloud.ssm.get_parameters_by_path(Path=PREFIX)["Parameters"]} == {f"{PREFIX}/api.other"}
    assert all(cloud.instance(i)["State"]["Name"] in ("shutting-down", "terminated") for i in left_over)
    assert cloud.instance(cloud.instance_of(other))["State"]["Name"] == "running"
    await provider.remove_deployment("dep-chat1", "chat")  # again: nothing left, no error
