"""Stack files: the committed ones validate; a wrong one is refused with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inferstack.declared.stackfile import StackFileError, load_stack_file, parse_config, stack_name_of
from inferstack.hardware import aws_instance_type

ROOT = Path(__file__).resolve().parents[2]
AWS_PLATFORM = {"public": True, "aws": {"docker_hub_credentials_secret_arn": "arn:aws:secretsmanager:::secret:x"}}


@pytest.mark.parametrize(("stack", "target"), [("local", "local"), ("dev", "kubernetes"), ("prod", "aws")])
def test_committed_stacks_validate(stack: str, target: str) -> None:
    config = load_stack_file(ROOT / f"stacks/Pulumi.{stack}.yaml")
    assert config.stack == stack and config.target == target
    assert config.deployments and all(d.name for d in config.deployments)
    assert all(d.hf_token is None for d in config.deployments), "tokens never live in a stack file"


def errors_of(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(StackFileError) as caught:
        parse_config({"inferstack:target": "local", **config}, "dev")
    return {e["field"]: e["message"] for e in caught.value.errors}


def test_every_wrong_field_is_named_at_once() -> None:
    errors = errors_of({
        "inferstack:deployments": [
            {"name": "a", "hf_model_id": "m", "hardware_profile": "cpu", "min_replicas": 2, "max_replicas": 1},
            {"name": "a", "hf_model_id": "m", "hardware_profile": "cpu"},
            {"hf_model_id": "m"},
            {"name": "b", "hf_model_id": "m", "target_rps": -1},
        ],
        "inferstack:platform": {"local": {"port": 0}, "colour": "blue"},
        "inferstack:deploymnets": [],
    })
    assert errors["inferstack:deployments[0](a).min_replicas"] == "min_replicas (2) must not exceed max_replicas (1)"
    assert "declared twice" in errors["inferstack:deployments[1](a).name"]
    assert "required" in errors["inferstack:deployments[2].name"]
    assert "greater than 0" in errors["inferstack:deployments[3](b).target_rps"]
    assert "inferstack:platform.local.port" in errors and "inferstack:platform.colour" in errors
    assert "unknown key" in errors["inferstack:deploymnets"]


def test_secrets_must_be_secure_values_and_never_inline() -> None:
    errors = errors_of({"inferstack:hfToken": "hf_plaintext",
                        "inferstack:deployments": [{"name": "a", "hf_model_id": "m", "hf_token": "hf_x"}]})
    assert "pulumi config set --secret inferstack:hfToken" in errors["inferstack:hfToken"]
    assert "never inline a token" in errors["inferstack:deployments[0](a).hf_token"]
    config = parse_config({"inferstack:target": "local", "inferstack:hfToken": {"secure": "v1:abc"},
                           "inferstack:apiKey": {"secure": "v1:def"}}, "dev")
    assert config.secret_keys_present == {"hfToken", "apiKey"}


def test_target_is_required_and_public_endpoints_require_api_keys() -> None:
    with pytest.raises(StackFileError) as caught:
        parse_config({"inferstack:platform": {"public": True, "require_api_keys": False}}, "dev")
    message = str(caught.value)
    assert "inferstack:target: must be one of local, kubernetes, aws" in message
    with pytest.raises(StackFileError, match="require_api_keys must be true"):
        parse_config({"inferstack:target": "aws", "inferstack:platform": {"public": True, "require_api_keys": False}},
                     "prod")


def test_aws_needs_an_instance_type_for_the_gpus_per_replica() -> None:
    assert aws_instance_type("gpu.l4", 1) == "g6.xlarge"
    assert aws_instance_type("gpu.l4", 2) == "g6.12xlarge"  # L4s come in 1, 4 and 8
    assert aws_instance_type("gpu.a100", 1) == "p4d.24xlarge"
    config = parse_config({"inferstack:target": "aws", "inferstack:platform": AWS_PLATFORM, "inferstack:deployments": [
        {"name": "a", "hf_model_id": "m", "hardware_profile": "gpu.l4", "gpus_per_replica": 8}]}, "prod")
    assert config.hardware_profiles() == ["gpu.l4"]


def test_stack_name_comes_from_the_file_name(tmp_path: Path) -> None:
    assert stack_name_of(Path("stacks/Pulumi.prod.yaml")) == "prod"
    with pytest.raises(StackFileError, match=r"Pulumi\.<stack>\.yaml"):
        stack_name_of(Path("stacks/prod.yaml"))
    broken = tmp_path / "Pulumi.x.yaml"
    broken.write_text("config: [1, 2")
    with pytest.raises(StackFileError, match="not valid YAML"):
        load_stack_file(broken)


def test_aws_settings_that_a_real_account_would_break_on_are_refused_at_preview() -> None:
    def aws_errors(platform: dict[str, Any]) -> str:
        with pytest.raises(StackFileError) as caught:
            parse_config({"inferstack:target": "aws", "inferstack:platform": platform, "inferstack:deployments": [
                {"name": "a", "hf_model_id": "m", "hardware_profile": "gpu.l4"}]}, "prod")
        return str(caught.value)

    creds = AWS_PLATFORM["aws"]
    # The certificate is for the user's domain: https://<load balancer name> would fail TLS verification.
    assert "domain_name: required with certificate_arn" in aws_errors(
        {"public": True, "aws": {**creds, "certificate_arn": "arn:aws:acm:::certificate/x"}})
    # An internal load balancer cannot be reached by `pulumi up` in CI, which creates the deployments.
    assert "cannot reach" in aws_errors({"public": False, "aws": creds})
    parse_config({"inferstack:target": "aws", "inferstack:platform": {"public": False, "aws": {
        **creds, "deployer_in_vpc": True}}}, "prod")
    # Anonymous Docker Hub pulls through one NAT address hit the rate limit.
    assert "docker_hub_credentials_secret_arn: required" in aws_errors({"public": True})
    parse_config({"inferstack:target": "aws", "inferstack:platform": {
        "public": True, "vllm_image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:v1"}}, "prod")


def test_a_stack_file_declares_adapters_and_their_limits_with_the_fields_named() -> None:
    config = parse_config({"inferstack:target": "local", "inferstack:deployments": [
        {"name": "chat", "hf_model_id": "m", "hardware_profile": "cpu", "max_loras": 3,
         "adapters": [{"name": "sql", "source": "org/sql-lora", "rank": 16}, {"name": "law", "source": "/a/law"},
                      {"name": "tax", "source": "s3://adapters/team/tax"}]}]}, "dev")
    assert [a.name for a in config.deployments[0].adapters] == ["sql", "law", "tax"]
    errors = errors_of({"inferstack:deployments": [
        {"name": "a", "hf_model_id": "m", "max_loras": 1,
         "adapters": [{"name": "x", "source": "o/x"}, {"name": "y", "source": "o/y"}]},
        {"name": "b", "hf_model_id": "m", "adapters": [{"name": "x", "source": "ftp://host/x"}]}]})
    assert errors["inferstack:deployments[0](a).adapters"] == "2 adapters exceed max_loras (1)"
    assert "s3://bucket/prefix" in errors["inferstack:deployments[1](b).adapters.0.source"]
