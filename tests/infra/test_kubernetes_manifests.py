"""Every Kubernetes object the dev stack renders validates against the official OpenAPI schemas
(kubernetes-validate, strict: an unknown or misspelt field fails)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml
from program_harness import ROOT, Program

KUBERNETES_VERSION = "1.37.0"


def unwrap(value: Any) -> Any:
    """Pulumi secrets ({"$secret": value}) become the plain values the API receives."""
    if isinstance(value, dict):
        return unwrap(value["$secret"]) if set(value) == {"$secret"} else {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def as_manifest(resource: dict[str, Any]) -> dict[str, Any]:
    """`kubernetes:apps/v1:Deployment` with camelCase inputs -> the API's own object."""
    _, api, kind = resource["type"].split(":")
    api_version = api.removeprefix("core/")
    return {"apiVersion": api_version, "kind": kind, **unwrap(resource["inputs"])}


def validate_all(program: Program) -> None:
    objects = [r for r in program.resources if r["type"].startswith("kubernetes:")]
    assert len(objects) > 10
    for resource in objects:
        manifest = as_manifest(resource)
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{resource['name']} ({manifest['kind']}): {exc.message} at {list(exc.path)}")


def test_every_object_of_the_kubernetes_stack_validates(dev: Program) -> None:
    validate_all(dev)


def test_a_declared_deployments_s3_adapters_are_fetched_by_an_init_container_and_validate(
        program: Callable[..., Program]) -> None:
    deployments = yaml.safe_load((ROOT / "stacks/Pulumi.dev.yaml").read_text())["config"]["inferstack:deployments"]
    deployments[0]["adapters"] = [{"name": "sql", "source": "s3://adapters/team/sql"}]
    built = program("stacks/Pulumi.dev.yaml", "--set", f"inferstack:deployments={json.dumps(deployments)}")
    assert built.error is None, built.error
    validate_all(built)
    pods = {r["name"]: r["inputs"]["spec"]["template"]["spec"] for r in built.of_type("kubernetes:apps/v1:Deployment")
            if "initContainers" in r["inputs"]["spec"]["template"]["spec"]}
    [(name, pod)] = pods.items()
    assert name.endswith(deployments[0]["name"])
    [init] = pod["initContainers"]
    assert init["command"][-3:] == ["--into", "/adapters", "sql=s3://adapters/team/sql"]
    assert {"name": "adapters", "mountPath": "/adapters", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert "sql" in " ".join(pod["containers"][0]["command"]) and "/adapters/sql" in " ".join(
        pod["containers"][0]["command"])
