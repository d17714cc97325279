"""The one description of a deployment's AWS replica groups, and the boto3 requests rendered from it."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from inferstack.providers.aws_cloud import create_group_request, repoint_request
from inferstack.providers.aws_groups import (
    CAPACITY_TAG,
    DEPLOYMENT_ID_TAG,
    DEPLOYMENT_TAG,
    DOCUMENT_TAG,
    OWNER_TAG,
    STACK_TAG,
    MissingLaunchTemplate,
    ReplicaGroup,
    capacities,
    controller_group_pattern,
    group_name,
    launch_document_name,
    launch_template_id,
    owner_of,
    parameter_name,
    parameter_prefix,
    replica_groups,
)
from inferstack.spec import DeploymentSpec


def spec(**changes: Any) -> DeploymentSpec:
    fields: dict[str, Any] = {"name": "chat", "hf_model_id": "acme/tiny-chat", "hardware_profile": "gpu.l4",
                              "min_replicas": 2, "max_replicas": 5}
    return DeploymentSpec(**{**fields, **changes})


def groups(**changes: Any) -> list[ReplicaGroup[str]]:
    return replica_groups("prod", "chat", spec(**changes), deployment_id="dep-1", launch_template_id="lt-1",
                          instance_type="g6.xlarge")


def test_spot_comes_first_and_on_demand_is_always_the_fallback() -> None:
    assert capacities(spec()) == ["on-demand"]
    assert capacities(spec(allow_spot=True)) == ["spot", "on-demand"]
    spot, fallback = groups(allow_spot=True)
    assert (spot.name, fallback.name) == ("inferstack-prod-chat-spot", "inferstack-prod-chat-on-demand")
    assert (spot.on_demand_percentage_above_base_capacity, fallback.on_demand_percentage_above_base_capacity) == (
        0, 100)
    assert spot.capacity_rebalance and not fallback.capacity_rebalance


def test_only_the_first_group_starts_at_min_replicas_and_max_is_the_specs() -> None:
    spot, fallback = groups(allow_spot=True)
    assert (spot.declared_desired_capacity, fallback.declared_desired_capacity) == (2, 0)
    (only,) = groups()
    assert only.declared_desired_capacity == 2
    assert (only.min_size, only.max_size) == (0, 5)


def test_tags_name_the_stack_deployment_id_capacity_owner_and_document() -> None:
    spot, _ = groups(allow_spot=True)
    assert spot.tags == {STACK_TAG: "prod", DEPLOYMENT_TAG: "chat", DEPLOYMENT_ID_TAG: "dep-1", CAPACITY_TAG: "spot",
                         OWNER_TAG: "pulumi", DOCUMENT_TAG: "chat"}


@pytest.mark.parametrize("name", ["chat", "api", "api-chat", "a", "x" * 63])
def test_names_the_controller_creates_are_never_names_pulumi_creates(name: str) -> None:
    """A declared deployment's groups and document are Pulumi's; an API-made one's are the controller's.
    For any two deployment names the two sets never meet, so neither side creates what the other does."""
    assert owner_of(name, {name}) == "pulumi" and owner_of(name, {"other"}) == "controller"
    for other in ("chat", "api", "api-chat", "x" * 63):
        for capacity in ("spot", "on-demand"):
            assert group_name("prod", name, capacity, "controller") != group_name("prod", other, capacity, "pulumi")
        assert launch_document_name("/p", name, "controller") != launch_document_name("/p", other, "pulumi")
    (group,) = replica_groups("prod", name, spec(), deployment_id="d", launch_template_id="lt", instance_type="g6",
                              owner="controller")
    assert fnmatch.fnmatchcase(group.name, controller_group_pattern("prod"))
    assert group.tags[DOCUMENT_TAG] == launch_document_name("/p", name, "controller").removeprefix("/p/")
    with pytest.raises(ValueError, match="lower-case letters, digits and '-'"):
        spec(name="api.chat")  # why the two never meet: no deployment name holds the controller's dot


def test_deploy_time_values_pass_through_untouched() -> None:
    """Pulumi hands in Outputs for the deployment id and the template id: the description only places them."""
    marker = object()
    (group,) = replica_groups("prod", "chat", spec(), deployment_id=marker, launch_template_id=marker,
                              instance_type="g6.xlarge")
    assert group.launch_template_id is marker and group.tags[DEPLOYMENT_ID_TAG] is marker


def test_launch_documents_live_under_the_stack_prefix() -> None:
    assert parameter_name(parameter_prefix("prod"), "chat") == "/inferstack/prod/deployments/chat"


def test_a_profile_without_a_launch_template_is_named_with_those_there_are() -> None:
    assert launch_template_id({"gpu.l4": "lt-1"}, "gpu.l4", "prod") == "lt-1"
    with pytest.raises(MissingLaunchTemplate, match=r"'gpu.h100' has no launch template in stack 'prod' \(it has: "
                                                    r"gpu.a10g, gpu.l4\)"):
        launch_template_id({"gpu.l4": "lt-1", "gpu.a10g": "lt-2"}, "gpu.h100", "prod")


def test_a_group_is_created_empty_with_the_described_settings() -> None:
    spot, _ = groups(allow_spot=True)
    request = create_group_request(spot, ["subnet-a", "subnet-b"])
    assert request["DesiredCapacity"] == 0 and request["VPCZoneIdentifier"] == "subnet-a,subnet-b"
    assert request["MixedInstancesPolicy"] == {
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": "lt-1", "Version": "$Latest"},
                           "Overrides": [{"InstanceType": "g6.xlarge"}]},
        "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
                                  "SpotAllocationStrategy": "price-capacity-optimized"}}
    assert (request["HealthCheckType"], request["HealthCheckGracePeriod"]) == ("EC2", 900)
    assert request["NewInstancesProtectedFromScaleIn"] is True and request["CapacityRebalance"] is True
    assert {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in request["Tags"]} == {
        k: (v, True) for k, v in spot.tags.items()}


def test_a_group_is_repointed_only_when_its_template_or_instance_type_changed() -> None:
    (group,) = groups()
    same = create_group_request(group, ["subnet-a"])
    assert repoint_request(group, same) is None
    kept = {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 50}
    bigger = replica_groups("prod", "chat", spec(), deployment_id="dep-1", launch_template_id="lt-1",
                            instance_type="g6.12xlarge")[0]
    update = repoint_request(bigger, {**same, "MixedInstancesPolicy": {**same["MixedInstancesPolicy"],
                                                                        "InstancesDistribution": kept}})
    assert update == {"AutoScalingGroupName": "inferstack-prod-chat-on-demand", "MixedInstancesPolicy": {
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": "lt-1", "Version": "$Latest"},
                           "Overrides": [{"InstanceType": "g6.12xlarge"}]},
        "InstancesDistribution": kept}}
