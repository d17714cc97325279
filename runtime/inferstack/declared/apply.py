"""Carry out a plan (`declared.plan`) against a control plane, over the REST client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferstack.client import ControlPlaneClient, ControlPlaneError
from inferstack.declared.plan import Action, Change, Plan, create_body, update_body


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


def apply(plan: Plan, client: ControlPlaneClient) -> list[Outcome]:
    """Carry out a plan: deletions first (they free names), then replacements, creations, updates.

    Every change is tried; one that fails is reported and the others still go ahead (they are
    independent deployments). Running `plan` again afterwards gives an empty plan.
    """
    outcomes = []
    for change in sorted(plan.changes, key=lambda c: _ORDER[c.action]):
        try:
            outcomes.append(_apply_one(change, client))
        except ControlPlaneError as exc:
            outcomes.append(Outcome(change, False, exc.describe()))
    return outcomes


def _apply_one(change: Change, client: ControlPlaneClient) -> Outcome:
    ref = change.deployment_id or change.name
    if change.action is Action.delete:
        client.delete_deployment(ref, missing_ok=True)
        return Outcome(change, True, "deleted")
    assert change.spec is not None
    if change.action is Action.create:
        return Outcome(change, True, "created", client.create_deployment(create_body(change.spec)))
    if change.action is Action.replace:
        client.delete_deployment(ref, missing_ok=True)
        return Outcome(change, True, "replaced", client.create_deployment(create_body(change.spec)))
    body = update_body(change.spec, change.fields)
    return Outcome(change, True, "updated", client.update_deployment(ref, body))
