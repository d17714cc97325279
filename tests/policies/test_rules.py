"""Each policy rule called directly: a passing and a violating case (never through a PolicyPack)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from inferstack.settings import Env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "policies"))

import rules  # noqa: E402
from rules import DEPLOYMENT_TYPE, PolicyConfig, Resource  # noqa: E402

CONFIG = PolicyConfig.from_mapping({k: v for section in json.loads((ROOT / "policies/config.json").read_text()).values()
                                    for k, v in section.items()})


def deployment(**fields: Any) -> Resource:
    props = {"name": "chat", "hf_model_id": "meta-llama/Llama-3.1-8B-Instruct", "hardware_profile": "gpu.l4",
             "min_replicas": 0, "max_replicas": 2, "stabilisation_window": 300, "url": "http://cp", **fields}
    return Resource(DEPLOYMENT_TYPE, f"inferstack-dev-deployments-{props['name']}", props, ("hf_token",))


# --- allowed hardware profiles ---------------------------------------------------------------------------


def test_allowed_hardware_profiles() -> None:
    assert rules.allowed_hardware_profiles(deployment(hardware_profile="gpu.l4"), "dev", CONFIG) == []
    (message,) = rules.allowed_hardware_profiles(deployment(hardware_profile="gpu.h100", gpus_per_replica=8), "dev",
                                                 CONFIG)
    assert "'gpu.h100'" in message and "stack 'dev'" in message
    # Per stack: prod allows the H100s that dev does not; an unlisted stack falls back to '*'.
    assert rules.allowed_hardware_profiles(deployment(hardware_profile="gpu.h100", gpus_per_replica=8), "prod",
                                           CONFIG) == []
    assert rules.allowed_hardware_profiles(deployment(hardware_profile="gpu.l4"), "sandbox", CONFIG) != []


def test_rules_ignore_resources_that_are_not_deployments() -> None:
    other = Resource("aws:s3/bucket:Bucket", "files", {"bucket": "x"})
    for rule in rules.RESOURCE_RULES.values():
        assert rule(other, "dev", CONFIG) == []


# --- max_replicas ceiling ----------------------------------------------------------------------------------


def test_max_replicas_ceiling() -> None:
    assert rules.max_replicas_ceiling(deployment(max_replicas=16), "prod", CONFIG) == []
    (message,) = rules.max_replicas_ceiling(deployment(max_replicas=17), "prod", CONFIG)
    assert "max_replicas 17" in message and "ceiling of 16" in message


# --- monthly budget ----------------------------------------------------------------------------------------


def test_monthly_budget_sums_max_replicas_times_price_times_hours() -> None:
    # 2 x 0.80 + 1 x 0.80 = 2.40 $/h x 730 h = 1,752 USD: under dev's 5,000.
    fits = [deployment(name="chat", max_replicas=2), deployment(name="embed", max_replicas=1)]
    assert rules.monthly_budget(fits, "dev", CONFIG) == []
    # 8 x 0.80 = 6.40 $/h -> 4,672; plus 1 x 8 x 4.10 = 32.80 $/h -> 23,944: 28,616 USD > 5,000.
    over = [deployment(name="chat", max_replicas=8),
            deployment(name="big", hardware_profile="gpu.a100", gpus_per_replica=8, max_replicas=1)]
    (message,) = rules.monthly_budget(over, "dev", CONFIG)
    assert "28,616.00 USD" in message and "budget of 5,000.00 USD" in message


# --- scale to zero outside prod ------------------------------------------------------------------------------


def test_scale_to_zero_outside_prod() -> None:
    assert rules.scale_to_zero_outside_prod(deployment(min_replicas=0), "dev", CONFIG) == []
    assert rules.scale_to_zero_outside_prod(deployment(min_replicas=1), "prod", CONFIG) == []
    (message,) = rules.scale_to_zero_outside_prod(deployment(min_replicas=1), "dev", CONFIG)
    assert "min_replicas 1" in message and "'dev'" in message


# --- HF token must be a secret ----------------------------------------------------------------------------

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def pod(env: list[dict[str, Any]]) -> Resource:
    return Resource("kubernetes:apps/v1:Deployment", "replicas-chat", {"spec": {"template": {"spec": {
        "containers": [{"name": "engine", "image": "vllm/vllm-openai", "env": env}]}}}})


def test_hf_token_passes_as_a_secret_input_and_a_secret_reference() -> None:
    assert rules.hf_token_is_secret(deployment(hf_token=TOKEN), "dev", CONFIG) == []
    reference = {"secretKeyRef": {"name": "inferstack-hf-token", "key": "token"}}
    by_reference = [{"name": "HF_TOKEN", "valueFrom": reference}]
    assert rules.hf_token_is_secret(pod(by_reference), "dev", CONFIG) == []
    k8s_secret = Resource("kubernetes:core/v1:Secret", "hf", {"stringData": {"token": TOKEN}})
    assert rules.hf_token_is_secret(k8s_secret, "dev", CONFIG) == []


@pytest.mark.parametrize("resource", [
    pod([{"name": "HF_TOKEN", "value": TOKEN}]),
    Resource("kubernetes:core/v1:ConfigMap", "settings", {"data": {"token": TOKEN}}),
    Resource("aws:ec2/launchTemplate:LaunchTemplate", "gpu",
             {"userData": base64.b64encode(f"#!/bin/bash\nexport HF_TOKEN={TOKEN}\n".encode()).decode()}),
    Resource("aws:ecs/taskDefinition:TaskDefinition", "cp", {"containerDefinitions": json.dumps(
        [{"name": "cp", "environment": [{"name": "HF_TOKEN", "value": "from-somewhere"}]}])}),
    Resource(DEPLOYMENT_TYPE, "chat", {"name": "chat", "hf_model_id": "m", "hardware_profile": "cpu",
                                       "hf_token": TOKEN}, ()),
    pod([{"name": Env.TOKEN_KEY, "value": "0123456789abcdef0123456789abcdef"}]),
    Resource("aws:ecs/taskDefinition:TaskDefinition", "cp", {"containerDefinitions": json.dumps(
        [{"name": "cp", "environment": [{"name": Env.TOKEN_KEY, "value": "0123456789abcdef0123456789abcdef"}]}])}),
], ids=["pod-env-value", "configmap", "user-data", "ecs-environment", "deployment-not-marked-secret",
        "token-key-pod-env-value", "token-key-ecs-environment"])
def test_hf_token_in_plain_text_is_a_violation(resource: Resource) -> None:
    assert rules.hf_token_is_secret(resource, "dev", CONFIG) != []


# --- no public endpoint without API keys ----------------------------------------------------------------


def control_plane(bootstrap_key: str | None) -> Resource:
    """`bootstrap_key`: "secret" (from a Secret), "plain" (a value in the pod spec) or None."""
    env = []
    if bootstrap_key == "secret":
        env.append({"name": Env.BOOTSTRAP_API_KEY,
                    "valueFrom": {"secretKeyRef": {"name": "inferstack-api-key", "key": "api-key"}}})
    elif bootstrap_key == "plain":
        env.append({"name": Env.BOOTSTRAP_API_KEY, "value": "isk-written-into-the-pod-spec"})
    return Resource("kubernetes:apps/v1:Deployment", "control-plane", {
        "metadata": {"labels": {"app.kubernetes.io/component": "control-plane"}},
        "spec": {"template": {"spec": {"containers": [{"name": "cp", "env": env}]}}}})


INGRESS = Resource("kubernetes:networking.k8s.io/v1:Ingress", "ingress", {"spec": {}})
PUBLIC_ALB = Resource("aws:lb/loadBalancer:LoadBalancer", "alb", {"internal": False})


def test_public_endpoint_with_api_keys_passes_and_private_needs_none() -> None:
    assert rules.public_endpoint_requires_api_keys([INGRESS, control_plane("secret")], "dev", CONFIG) == []
    internal = Resource("aws:lb/loadBalancer:LoadBalancer", "alb", {"internal": True})
    assert rules.public_endpoint_requires_api_keys([internal, control_plane(None)], "dev", CONFIG) == []


@pytest.mark.parametrize("resources", [
    [INGRESS, control_plane("plain")],
    [PUBLIC_ALB, control_plane(None)],
    [Resource("kubernetes:core/v1:Service", "lb", {"spec": {"type": "LoadBalancer"}})],
    [Resource(rules.LOCAL_CONTROL_PLANE_TYPE, "cp", {"host": "0.0.0.0", "api_key_digest": None})],
], ids=["key-not-from-a-secret", "no-bootstrap-key", "no-control-plane", "local-on-all-interfaces-without-key"])
def test_public_endpoint_without_api_keys_is_a_violation(resources: list[Resource]) -> None:
    assert rules.public_endpoint_requires_api_keys(resources, "dev", CONFIG) != []


# --- stabilisation window floor --------------------------------------------------------------------------


def test_stabilisation_window_floor() -> None:
    assert rules.stabilisation_window_floor(deployment(stabilisation_window=120), "dev", CONFIG) == []
    (message,) = rules.stabilisation_window_floor(deployment(stabilisation_window=30), "dev", CONFIG)
    assert "30 s" in message and "120 s" in message


# --- spot only where allowed ---------------------------------------------------------------------------------


def spot_group(on_demand_percent: int) -> Resource:
    return Resource("aws:autoscaling/group:Group", "chat-spot", {"mixedInstancesPolicy": {
        "instancesDistribution": {"onDemandPercentageAboveBaseCapacity": on_demand_percent}}})


def test_spot_only_where_allowed() -> None:
    assert rules.spot_only_where_allowed(deployment(allow_spot=True), "prod", CONFIG) == []
    assert rules.spot_only_where_allowed(spot_group(0), "prod", CONFIG) == []
    assert rules.spot_only_where_allowed(deployment(allow_spot=False), "dev", CONFIG) == []
    assert rules.spot_only_where_allowed(spot_group(100), "dev", CONFIG) == []
    assert rules.spot_only_where_allowed(deployment(allow_spot=True), "dev", CONFIG) != []
    assert rules.spot_only_where_allowed(spot_group(0), "dev", CONFIG) != []


# --- configuration ---------------------------------------------------------------------------------------


def test_config_defaults_and_overrides() -> None:
    default = PolicyConfig()
    assert default.max_replicas_ceiling == 16 and "prod" in default.production_stacks
    tuned = PolicyConfig.from_mapping({"max_replicas_ceiling": 4, "production_stacks": ["prod", "staging"]})
    assert tuned.max_replicas_ceiling == 4 and tuned.production_stacks == frozenset({"prod", "staging"})
    assert rules.scale_to_zero_outside_prod(deployment(min_replicas=1), "staging", tuned) == []


def replica_group(deployment: str, instance_type: str) -> Resource:
    return Resource("aws:autoscaling/group:Group", f"inferstack-prod-replicas-{deployment}-on-demand", {
        "tags": [{"key": "inferstack:deployment", "value": deployment, "propagateAtLaunch": True}],
        "mixedInstancesPolicy": {"launchTemplate": {"overrides": [{"instanceType": instance_type}]}}})


def test_monthly_budget_prices_the_machine_launched_and_the_platform_at_rest() -> None:
    # A 2-GPU L4 replica runs on g6.12xlarge (4 x L4, 3.20 $/h), not on "2 x 0.80": 10 of them are
    # 32.00 $/h -> 23,360 USD, over a 20,000 budget that 2 GPUs' worth (11,680) would pass.
    config = PolicyConfig.from_mapping({"monthly_budget_usd": {"*": 20_000}})
    chat = deployment(gpus_per_replica=2, max_replicas=10)
    assert rules.monthly_budget([chat], "dev", config) == []  # without AWS groups: 2 x 0.80 $/h
    (message,) = rules.monthly_budget([chat, replica_group("chat", "g6.12xlarge")], "dev", config)
    assert "10 x 3.2 $/h (g6.12xlarge)" in message and "23,360.00 USD" in message
    # The platform bills at rest: 2 Fargate tasks (1 vCPU, 2 GB), Multi-AZ db.t4g.medium, NAT, ALB.
    platform = [
        Resource("aws:ecs/taskDefinition:TaskDefinition", "task", {"requiresCompatibilities": ["FARGATE"],
                                                                   "cpu": "1024", "memory": "2048"}),
        Resource("aws:ecs/service:Service", "service", {"desiredCount": 2}),
        Resource("aws:rds/instance:Instance", "db", {"instanceClass": "db.t4g.medium", "multiAz": True,
                                                      "allocatedStorage": 20}),
        Resource("aws:ec2/natGateway:NatGateway", "nat", {}),
        Resource("aws:lb/loadBalancer:LoadBalancer", "alb", {}),
    ]
    tight = PolicyConfig.from_mapping({"monthly_budget_usd": {"*": 100}})
    (message,) = rules.monthly_budget(platform, "dev", tight)
    # 2 x (0.04048 + 2 x 0.004445) + 2 x (0.065 + 20 x 0.115 / 730) + 0.045 + 0.0305 = 0.3105 $/h -> 226.70 USD
    assert "226.70 USD" in message and "NAT gateway" in message and "database db.t4g.medium" in message
    unknown = Resource("aws:rds/instance:Instance", "db", {"instanceClass": "db.x2g.16xlarge"})
    (message,) = rules.monthly_budget([unknown], "dev", tight)
    assert "cannot check its budget" in message and "db.x2g.16xlarge" in message
