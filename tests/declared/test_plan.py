"""`plan`: pure, from declared specs and live deployment objects to the changes that make them equal."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from inferstack.declared.plan import Action, plan, spec_changes, update_body
from inferstack.spec import DeploymentSpec


def spec(name: str, **fields: Any) -> DeploymentSpec:
    return DeploymentSpec(name=name, hf_model_id="m/chat", engine="sim", hardware_profile="cpu", **fields)


def live(declared: DeploymentSpec, deployment_id: str, token_set: bool = False, **changes: Any) -> dict[str, Any]:
    shown = declared.public() | changes | {"hf_token_set": token_set}
    return {"deployment_id": deployment_id, "name": declared.name, "status": "running", "spec": shown}


def test_nothing_to_do_when_live_matches_declared() -> None:
    chat = spec("chat", max_replicas=3)
    result = plan([chat], [live(chat, "dep-1")])
    assert result.empty and result.unchanged == ("chat",)
    assert result.summary() == "1 unchanged"


def test_create_update_replace_and_delete() -> None:
    chat, embed, new = spec("chat", max_replicas=3), spec("embed", task="embed"), spec("new")
    actual = [live(chat, "dep-1", max_replicas=2, target_rps=5.0),
              live(embed, "dep-2", hf_model_id="m/old-embedder"),
              live(spec("gone"), "dep-3")]
    result = plan([chat, embed, new], actual)
    changes = {c.name: c for c in result.changes}
    assert changes["chat"].action is Action.update
    assert changes["chat"].fields == {"max_replicas": (2, 3), "target_rps": (5.0, 10.0)}
    assert changes["embed"].action is Action.replace and "hf_model_id" in changes["embed"].fields
    assert changes["new"].action is Action.create and changes["new"].spec == new
    assert changes["gone"].action is Action.delete and changes["gone"].deployment_id == "dep-3"
    assert result.summary() == "1 to create, 1 to update, 1 to replace, 1 to delete, 0 unchanged"


def test_without_prune_undeclared_deployments_stay() -> None:
    result = plan([], [live(spec("keep"), "dep-1")], prune=False)
    assert result.empty


def test_unsetting_an_optional_field_is_a_change_and_numbers_compare_by_value() -> None:
    assert spec_changes({"max_price_per_hour": None, "target_rps": 5}, {"max_price_per_hour": 3.0, "target_rps": 5.0}) \
        == {"max_price_per_hour": (3.0, None)}


def test_token_is_sent_when_missing_and_never_shown() -> None:
    with_token = spec("chat", hf_token=SecretStr("hf_secretvalue"))
    result = plan([with_token], [live(spec("chat"), "dep-1", token_set=False)])
    (change,) = result.changes
    assert change.action is Action.update and change.fields == {"hf_token": ("unset", "set")}
    assert "hf_secretvalue" not in str(result.to_dict())
    assert update_body(with_token, change.fields) == {"hf_token": "hf_secretvalue"}
    # A live token cannot be compared (write-only): present on both sides means no change.
    assert plan([with_token], [live(spec("chat"), "dep-1", token_set=True)]).empty


def test_patch_never_carries_replace_only_fields() -> None:
    assert update_body(spec("chat", max_replicas=2), ["max_replicas", "hf_model_id", "engine"]) == {"max_replicas": 2}
