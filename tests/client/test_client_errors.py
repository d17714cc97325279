"""One error parser: a refusal reads the same from the CLI, `inferstack apply` and the client itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import inferstack.cli.output
from inferstack.cli import app
from inferstack.client import ControlPlaneClient, ControlPlaneError, error_from
from inferstack.declared.apply import apply
from inferstack.declared.plan import plan
from inferstack.errors import openai_error_body
from inferstack.spec import DeploymentSpec, describe_errors, error_fields


def refusal_422() -> httpx.Response:
    """What the API answers for a spec with min_replicas > max_replicas (as `api/app.py` builds it)."""
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec.model_validate({"hf_model_id": "m/x", "min_replicas": 5, "max_replicas": 1})
    errors = caught.value.errors()
    return httpx.Response(422, content=openai_error_body(422, describe_errors(errors), details=error_fields(errors)))


def refusing_client(**options: Any) -> ControlPlaneClient:
    return ControlPlaneClient("http://control-plane", "isk-test",
                              transport=httpx.MockTransport(lambda _request: refusal_422()), **options)


def test_a_422_reads_the_same_on_the_cli_and_in_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = error_from(refusal_422()).describe()
    assert expected == "min_replicas (5) must not exceed max_replicas (1)"

    monkeypatch.setattr(inferstack.cli.output, "ControlPlaneClient", refusing_client)
    result = CliRunner().invoke(app, ["create", "m/x", "--min-replicas", "5"], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and f"error: {expected} (HTTP 422)" in result.stderr

    declared = DeploymentSpec(name="chat", hf_model_id="m/x", engine="sim", hardware_profile="cpu")
    (outcome,) = apply(plan([declared], []), refusing_client())
    assert not outcome.ok and outcome.message == expected


def test_details_the_message_does_not_mention_are_added() -> None:
    body = openai_error_body(422, "invalid spec", details=[{"field": "max_replicas", "message": "too many"}])
    assert error_from(httpx.Response(422, content=body)).describe() == "invalid spec (max_replicas: too many)"


def test_a_body_that_is_not_json_still_gives_a_message() -> None:
    error = error_from(httpx.Response(502, text="Bad Gateway from the proxy"))
    assert (error.status, error.describe()) == (502, "Bad Gateway from the proxy")


def test_an_unreachable_control_plane_is_status_0_and_names_the_url() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ControlPlaneError) as caught:
        ControlPlaneClient("http://nowhere:1", "k", transport=httpx.MockTransport(down)).list_deployments()
    assert caught.value.status == 0 and "cannot reach the control plane at http://nowhere:1" in caught.value.message


def test_url_and_key_come_from_the_client_settings_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    monkeypatch.setenv("INFERSTACK_URL", "http://from-env:9000/")
    monkeypatch.setenv("INFERSTACK_API_KEY", "isk-env")
    ControlPlaneClient(transport=httpx.MockTransport(record)).list_deployments()
    ControlPlaneClient("http://given:1", "isk-given", transport=httpx.MockTransport(record)).list_deployments()
    assert [(str(r.url), r.headers["authorization"]) for r in seen] == [
        ("http://from-env:9000/v1/deployments", "Bearer isk-env"),
        ("http://given:1/v1/deployments", "Bearer isk-given"),
    ]
