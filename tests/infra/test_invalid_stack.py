"""An invalid stack fails at preview, before any resource, with the field named."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from program_harness import Program


def test_invalid_deployment_fails_naming_the_field(program: Callable[..., Program]) -> None:
    bad = [{"name": "chat", "hf_model_id": "meta-llama/Llama-3.1-8B-Instruct", "hardware_profile": "gpu.l4",
            "min_replicas": 3, "max_replicas": 1},
           {"name": "big", "hf_model_id": "meta-llama/Llama-3.1-70B-Instruct", "hardware_profile": "gpu.l4"}]
    result = program("stacks/Pulumi.dev.yaml", "--set", f"inferstack:deployments={json.dumps(bad)}")
    assert result.error is not None
    expected = "inferstack:deployments[0](chat).min_replicas: min_replicas (3) must not exceed max_replicas (1)"
    assert expected in result.error
    assert ("inferstack:deployments[1](big).hf_model_id: meta-llama/Llama-3.1-70B-Instruct needs about 141.2 GB"
            in result.error)
    assert not [r for r in result.resources if r["custom"]], "nothing is created from an invalid stack"


def test_unknown_hardware_profile_and_platform_setting_are_named(program: Callable[..., Program]) -> None:
    result = program("stacks/Pulumi.prod.yaml", "--set",
                     'inferstack:deployments=[{"name": "x", "hf_model_id": "m", "hardware_profile": "gpu.b200"}]',
                     "--set", 'inferstack:platform={"aws": {"load_balancer_idle_timeout_s": 10}}')
    assert result.error is not None
    assert "inferstack:deployments[0](x).hardware_profile: hardware_profile 'gpu.b200' is unknown" in result.error
    assert "inferstack:platform.aws.load_balancer_idle_timeout_s" in result.error


def test_plain_text_token_and_missing_api_key_are_refused(program: Callable[..., Program]) -> None:
    result = program("stacks/Pulumi.local.yaml", "--plain-hf-token", "--no-api-key")
    assert result.error is not None
    assert "inferstack:hfToken: must be a secret" in result.error
    assert "inferstack:apiKey: is required" in result.error
    assert result.resources == []


@pytest.mark.parametrize("stack_file", ["stacks/Pulumi.dev.yaml", "stacks/Pulumi.prod.yaml"])
def test_a_cloud_stack_without_a_token_key_fails_at_preview(program: Callable[..., Program], stack_file: str) -> None:
    result = program(stack_file, "--no-token-key", "--preview")
    assert result.error is not None
    assert "inferstack:tokenKey: is required" in result.error
    assert 'pulumi config set --secret inferstack:tokenKey "$(openssl rand -hex 32)"' in result.error
    assert result.resources == []


def test_the_local_target_needs_no_token_key(program: Callable[..., Program]) -> None:
    result = program("stacks/Pulumi.local.yaml", "--no-token-key", "--preview")
    assert result.error is None, result.error


def test_inline_token_in_a_deployment_is_refused(program: Callable[..., Program]) -> None:
    result = program("stacks/Pulumi.local.yaml", "--set",
                     'inferstack:deployments=[{"name": "x", "hf_model_id": "m", "hardware_profile": "cpu", '
                     '"hf_token": "hf_leaked"}]')
    assert result.error is not None and "inferstack:deployments[0](x).hf_token: never inline a token" in result.error
