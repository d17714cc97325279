"""What it takes to make a control plane's deployments match the declared ones. Pure.

`plan` compares desired specs with the deployment objects `GET /v1/deployments` returns and says what
to create, update, replace or delete. The Pulumi dynamic provider (`infra/deployment_resource.py`)
uses the same `spec_changes` and the spec's `IDENTITY_FIELDS`, so `pulumi preview` and
`inferstack apply` agree on what a change means.

Replica counts are never part of a plan: the control plane's autoscaler owns them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from inferstack.spec import IDENTITY_FIELDS, SPEC_FIELDS, TOKEN_FIELD, DeploymentSpec


def spec_changes(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`field -> (actual, desired)` for each spec field whose declared value differs from the live one.

    Both sides are JSON values of the spec (`DeploymentSpec.stored()`, or `spec` of a deployment
    object). A field missing on either side is None (Pulumi drops null properties), so unsetting an
    optional field (`max_price_per_hour: 5` -> absent) is a change. 5 and 5.0 are equal.
    """
    changes = {}
    for name in SPEC_FIELDS:
        if actual.get(name) != desired.get(name):
            changes[name] = (actual.get(name), desired.get(name))
    return changes


def create_body(spec: DeploymentSpec) -> dict[str, Any]:
    """A POST of the whole spec, with the token's value when it has one."""
    body = spec.stored()
    if spec.hf_token is not None:
        body[TOKEN_FIELD] = spec.hf_token.get_secret_value()
    return body


def update_body(spec: DeploymentSpec, fields: Collection[str]) -> dict[str, Any]:
    """A PATCH of just the changed fields (never the identity ones)."""
    values = spec.stored()
    body = {name: values[name] for name in fields if name in values and name not in IDENTITY_FIELDS}
    if TOKEN_FIELD in fields and spec.hf_token is not None:
        body[TOKEN_FIELD] = spec.hf_token.get_secret_value()
    return body


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
                                  fields={k: (None, v) for k, v in spec.stored().items()}))
            continue
        current_spec = current.get("spec", {})
        fields = spec_changes(spec.stored(), current_spec)
        if spec.hf_token is not None and not current_spec.get("hf_token_set"):
            fields[TOKEN_FIELD] = ("unset", "set")
        if not fields:
            unchanged.append(name)
            continue
        action = Action.replace if fields.keys() & IDENTITY_FIELDS else Action.update
        changes.append(Change(action, name, current.get("deployment_id"), fields, spec))
    if prune:
        declared_names = {s.name for s in declared}
        for name, current in live.items():
            if name not in declared_names:
                changes.append(Change(Action.delete, name, current.get("deployment_id")))
    return Plan(tuple(changes), tuple(unchanged))
