"""Reconcile declared deployments with a running control plane, without the Pulumi engine.

Three steps, like every loop here: load (the control plane's deployments) -> `plan` (pure: desired
specs + actual deployment objects -> a Plan of changes) -> `apply` (the REST calls). The Pulumi
dynamic provider (`infra/deployment_resource.py`) uses the same `spec_changes` and
`REPLACE_FIELDS`, so `pulumi preview` and `inferstack apply` agree on what a change means.

Replica counts are never part of a plan: the control plane's autoscaler owns them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from inferstack.spec import DeploymentSpec

REPLACE_FIELDS = frozenset({"hf_model_id", "name", "engine", "task"})
"""Changing one of these means a new deployment: the REST API refuses them in a PATCH."""

SPEC_FIELDS = tuple(name for name in DeploymentSpec.model_fields if name != "hf_token")
TOKEN_FIELD = "hf_token"


def desired_fields(spec: DeploymentSpec) -> dict[str, Any]:
    """A spec as JSON values, every field but the write-only token (defaults included)."""
    return spec.model_dump(mode="json", exclude={TOKEN_FIELD})


def spec_changes(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`field -> (actual, desired)` for each spec field whose declared value differs from the live one.

    Both sides are JSON values of the spec (`desired_fields`, or `spec` of a deployment object). A
    field missing on either side is None (Pulumi drops null properties), so unsetting an optional
    field (`max_price_per_hour: 5` -> absent) is a change. 5 and 5.0 are equal.
    """
    changes = {}
    for name in SPEC_FIELDS:
        if actual.get(name) != desired.get(name):
            changes[name] = (actual.get(name), desired.get(name))
    return changes


class Action(StrEnum):
    create = "create"
    update = "update"
    replace = "replace"
    delete = "delete"


@dataclass(frozen=True)
class Change:
    action: Action
    name: str
    deployment_id: str | None = None
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """field -> (live value, declared value); the token shows as 'set'/'unset', never its value."""
    spec: DeploymentSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "name": self.name, "deployment_id": self.deployment_id,
                "fields": {k: {"from": old, "to": new} for k, (old, new) in self.fields.items()}}


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    def summary(self) -> str:
        parts = [f"{self.count(a)} to {a.value}" for a in Action if self.count(a)]
        parts.append(f"{len(self.unchanged)} unchanged")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.changes], "unchanged": list(self.unchanged),
                "summary": self.summary()}


def plan(desired: Iterable[DeploymentSpec], actual: Iterable[dict[str, Any]], *, prune: bool = True) -> Plan:
    """What to do so that the live deployments match the declared ones, matched by name.

    `actual` are deployment objects as `GET /v1/deployments` returns them (`name`, `deployment_id`,
    `spec` with `hf_token_set`). A declared token is sent when the live deployment has none; a live
    token is never compared (it is write-only), so rotating one is an explicit update elsewhere.
    With `prune`, live deployments that are not declared are deleted: the API key's tenant belongs to
    the stack, as a Pulumi stack owns its resources.
    """
    live = {d["name"]: d for d in actual}
    changes: list[Change] = []
    unchanged: list[str] = []
    declared = list(desired)
    for spec in declared:
        name = spec.name or ""
        current = live.get(name)
        if current is None:
            changes.append(Change(Action.create, name, spec=spec,
                                  fields={k: (None, v) for k, v in desired_fields(spec).items()}))
            continue
        current_spec = current.get("spec", {})
        fields = spec_changes(desired_fields(spec), current_spec)
        if spec.hf_token is not None and not current_spec.get("hf_token_set"):
            fields[TOKEN_FIELD] = ("unset", "set")
        if not fields:
            unchanged.append(name)
            continue
        action = Action.replace if fields.keys() & REPLACE_FIELDS else Action.update
        changes.append(Change(action, name, current.get("deployment_id"), fields, spec))
    if prune:
        declared_names = {s.name for s in declared}
        for name, current in live.items():
            if name not in declared_names:
                changes.append(Change(Action.delete, name, current.get("deployment_id")))
    return Plan(tuple(changes), tuple(unchanged))


# --- the REST client -------------------------------------------------------------------------------------


class ControlPlaneError(Exception):
    """A refused or failed call, with the control plane's own message (and the fields it names)."""

    def __init__(self, status: int, message: str, details: list[dict[str, str]] | None = None) -> None:
        self.status = status
        self.message = message
        self.details = details or []
        super().__init__(f"{status}: {message}")


def create_body(spec: DeploymentSpec) -> dict[str, Any]:
    body = desired_fields(spec)
    if spec.hf_token is not None:
        body[TOKEN_FIELD] = spec.hf_token.get_secret_value()
    return body


def update_body(spec: DeploymentSpec, fields: Iterable[str]) -> dict[str, Any]:
    """A PATCH of just the changed fields (never the replace-only ones)."""
    values = desired_fields(spec)
    body = {name: values[name] for name in fields if name in values and name not in REPLACE_FIELDS}
    if TOKEN_FIELD in fields and spec.hf_token is not None:
        body[TOKEN_FIELD] = spec.hf_token.get_secret_value()
    return body


class ControlPlaneClient:
    """The native deployments REST API (`/v1/deployments`), synchronous: CLI and Pulumi use it."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def healthy(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def list_deployments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/deployments")["data"]

    def get_deployment(self, ref: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/v1/deployments/{ref}")
        except ControlPlaneError as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, spec: DeploymentSpec) -> dict[str, Any]:
        return self._call("POST", "/v1/deployments", json=create_body(spec))

    def update_deployment(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/v1/deployments/{ref}", json=body)

    def delete_deployment(self, ref: str) -> bool:
        """Delete; False when it was already gone (deleting is idempotent)."""
        try:
            self._call("DELETE", f"/v1/deployments/{ref}")
        except ControlPlaneError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ControlPlaneError(0, f"cannot reach the control plane at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()


def _error_from(response: httpx.Response) -> ControlPlaneError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = error.get("message") or response.text[:300] or response.reason_phrase
    return ControlPlaneError(response.status_code, message, error.get("details"))


# --- applying a plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    change: Change
    ok: bool
    message: str
    deployment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.change.to_dict(), "ok": self.ok, "message": self.message,
                "deployment_id": (self.deployment or {}).get("deployment_id", self.change.deployment_id)}


_ORDER = {Action.delete: 0, Action.replace: 1, Action.create: 2, Action.update: 3}


def apply(plan_: Plan, client: ControlPlaneClient) -> list[Outcome]:
    """Carry out a plan: deletions first (they free names), then replacements, creations, updates.

    Every change is tried; one that fails is reported and the others still go ahead (they are
    independent deployments). Running `plan` again afterwards gives an empty plan.
    """
    outcomes = []
    for change in sorted(plan_.changes, key=lambda c: _ORDER[c.action]):
        try:
            outcomes.append(_apply_one(change, client))
        except ControlPlaneError as exc:
            detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details)
            outcomes.append(Outcome(change, False, f"{exc.message}" + (f" ({detail})" if detail else "")))
    return outcomes


def _apply_one(change: Change, client: ControlPlaneClient) -> Outcome:
    ref = change.deployment_id or change.name
    if change.action is Action.delete:
        client.delete_deployment(ref)
        return Outcome(change, True, "deleted")
    assert change.spec is not None
    if change.action is Action.create:
        return Outcome(change, True, "created", client.create_deployment(change.spec))
    if change.action is Action.replace:
        client.delete_deployment(ref)
        return Outcome(change, True, "replaced", client.create_deployment(change.spec))
    body = update_body(change.spec, change.fields)
    return Outcome(change, True, "updated", client.update_deployment(ref, body))
