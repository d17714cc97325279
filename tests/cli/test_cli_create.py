"""The CLI sends only the options the user gave, so the spec's defaults are the only defaults."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import inferstack.cli.output
from inferstack.cli import app
from inferstack.client import ControlPlaneClient
from inferstack.spec import DeploymentSpec

Sent = list[tuple[str, str, Any]]


def deployment(body: dict[str, Any]) -> dict[str, Any]:
    spec = DeploymentSpec.model_validate(body)
    return {"id": "dep-1", "deployment_id": "dep-1", "name": spec.name or "dep-1", "status": "created",
            "status_reason": "", "spec": spec.public(), "replicas": [], "ready_replicas": 0, "cost": {"usd": 0.0}}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Point the CLI's client at an in-memory control plane that records each request."""
    requests: Sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        requests.append((request.method, request.url.path, body))
        return httpx.Response(201, json=deployment(body if request.method == "POST" else {"hf_model_id": "m/x"}))

    def client(**options: Any) -> ControlPlaneClient:
        return ControlPlaneClient("http://control-plane", "isk-test", transport=httpx.MockTransport(handle), **options)

    monkeypatch.setattr(inferstack.cli.output, "ControlPlaneClient", client)
    return requests


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_create_sends_only_the_model_when_nothing_else_is_given(sent: Sent) -> None:
    run("create", "m/x", "-o", "json")
    assert sent == [("POST", "/v1/deployments", {"hf_model_id": "m/x"})]


def test_create_sends_exactly_the_given_options_under_their_spec_names(sent: Sent) -> None:
    run("create", "m/x", "--name", "chat", "-g", "cpu", "--engine", "sim", "--min-replicas", "0",
        "--target-latency", "800", "--engine-arg", "--a", "--engine-arg", "--b", "-t", "hf_tok")
    assert sent[0][2] == {"hf_model_id": "m/x", "name": "chat", "hardware_profile": "cpu", "engine": "sim",
                          "min_replicas": 0, "target_latency_p95_ms": 800.0, "engine_args": ["--a", "--b"],
                          "hf_token": "hf_tok"}


def test_update_sends_only_the_given_options(sent: Sent) -> None:
    run("update", "chat", "--max-replicas", "4", "--immediate-scale-down")
    assert sent == [("PATCH", "/v1/deployments/chat", {"max_replicas": 4, "immediate_scale_down": True})]


@pytest.mark.parametrize("option, field", [("--gpu", "hardware_profile"), ("--target-rps", "target_rps"),
                                           ("--stabilisation", "stabilisation_window")])
def test_the_help_shows_the_spec_defaults(option: str, field: str) -> None:
    line = next(line for line in run("create", "--help").splitlines() if option in line)
    assert f"(spec default: {DeploymentSpec.model_fields[field].default})" in line
