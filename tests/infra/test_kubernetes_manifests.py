"""Every Kubernetes object the dev stack renders validates against the official OpenAPI schemas
(kubernetes-validate, strict: an unknown or misspelt field fails)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from program_harness import Program

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


def test_every_object_of_the_kubernetes_stack_validates(dev: Program) -> None:
    objects = [r for r in dev.resources if r["type"].startswith("kubernetes:")]
    assert len(objects) > 10
    for resource in objects:
        manifest = as_manifest(resource)
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{resource['name']} ({manifest['kind']}): {exc.message} at {list(exc.path)}")
