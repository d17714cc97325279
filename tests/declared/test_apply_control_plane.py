"""`inferstack apply` against a real control plane (`inferstack serve` in a subprocess, sim engine, cpu):
plan first, nothing changes without --yes, then create / change / remove, idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from typer.testing import CliRunner

from inferstack.cli.apply import apply
from support import ControlPlane

app = typer.Typer()
app.command("apply")(apply)  # mounted as the CLI mounts it
app.command("noop", hidden=True)(lambda: None)  # two commands: `apply` stays a subcommand, as in the CLI

TOKEN = "hf_IntegrationTestToken0123456789abcdef"


def write_stack(path: Path, deployments: list[dict[str, Any]]) -> Path:
    config = {"inferstack:target": "local", "inferstack:deployments": deployments}
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def run(control_plane: ControlPlane, key: str, stack: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["apply", str(stack), "--url", control_plane.url, "--api-key", key, *options],
                                env={"COLUMNS": "200"})
    return result.exit_code, result.output


def live(control_plane: ControlPlane, key: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{control_plane.url}/v1/deployments", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return {d["name"]: d for d in response.json()["data"]}


CHAT = {"name": "chat", "hf_model_id": "meta-llama/Llama-3.2-1B-Instruct", "engine": "sim", "hardware_profile": "cpu",
        "min_replicas": 0, "max_replicas": 2, "stabilisation_window": 120}
EMBED = {"name": "embed", "hf_model_id": "BAAI/bge-large-en-v1.5", "task": "embed", "engine": "sim",
         "hardware_profile": "cpu", "min_replicas": 0, "max_replicas": 1}


@pytest.fixture
def key(control_plane: ControlPlane) -> str:
    return control_plane.create_key("platform")


def test_apply_converges_create_change_remove_idempotently(control_plane: ControlPlane, key: str,
                                                             tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "Pulumi.demo.yaml", [CHAT, EMBED])

    code, out = run(control_plane, key, stack)
    assert code == 0 and "2 to create" in out and "--yes" in out
    assert live(control_plane, key) == {}, "without --yes nothing changes"

    code, out = run(control_plane, key, stack, "--yes", "--hf-token", TOKEN)
    assert code == 0, out
    deployments = live(control_plane, key)
    assert sorted(deployments) == ["chat", "embed"]
    assert deployments["chat"]["spec"]["max_replicas"] == 2 and deployments["chat"]["spec"]["hf_token_set"] is True
    assert deployments["embed"]["spec"]["task"] == "embed"
    assert TOKEN not in out

    code, out = run(control_plane, key, stack, "--yes", "--hf-token", TOKEN)
    assert code == 0 and "matches the stack file" in out and "2 unchanged" in out

    chat_id = deployments["chat"]["deployment_id"]
    write_stack(stack, [{**CHAT, "max_replicas": 4, "target_rps": 3.5}])  # change chat, remove embed
    code, out = run(control_plane, key, stack, "--output", "json")
    planned = json.loads(out)["plan"]
    assert code == 0 and planned["summary"] == "1 to update, 1 to delete, 0 unchanged"
    update = next(c for c in planned["changes"] if c["action"] == "update")
    assert update["fields"] == {"max_replicas": {"from": 2, "to": 4}, "target_rps": {"from": 10.0, "to": 3.5}}

    code, out = run(control_plane, key, stack, "--yes", "--output", "json")
    assert code == 0 and all(item["ok"] for item in json.loads(out)["applied"])
    deployments = live(control_plane, key)
    assert sorted(deployments) == ["chat"]
    assert deployments["chat"]["deployment_id"] == chat_id, "a change is an update in place, not a new deployment"
    assert deployments["chat"]["spec"]["max_replicas"] == 4 and deployments["chat"]["spec"]["target_rps"] == 3.5

    code, out = run(control_plane, key, stack, "--yes", "--output", "json")
    assert code == 0 and json.loads(out)["plan"]["changes"] == [] and json.loads(out)["applied"] is None


def test_apply_keeps_undeclared_deployments_with_no_prune(control_plane: ControlPlane, key: str,
                                                          tmp_path: Path) -> None:
    run(control_plane, key, write_stack(tmp_path / "Pulumi.a.yaml", [CHAT, EMBED]), "--yes")
    code, out = run(control_plane, key, write_stack(tmp_path / "Pulumi.b.yaml", [CHAT]), "--yes", "--no-prune")
    assert code == 0 and "1 unchanged" in out and sorted(live(control_plane, key)) == ["chat", "embed"]


def test_apply_replaces_a_deployment_whose_model_changes(control_plane: ControlPlane, key: str,
                                                         tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "Pulumi.demo.yaml", [CHAT])
    run(control_plane, key, stack, "--yes")
    old_id = live(control_plane, key)["chat"]["deployment_id"]
    write_stack(stack, [{**CHAT, "hf_model_id": "Qwen/Qwen2.5-7B-Instruct"}])
    code, out = run(control_plane, key, stack, "--yes")
    assert code == 0, out
    chat = live(control_plane, key)["chat"]
    assert chat["deployment_id"] != old_id and chat["spec"]["hf_model_id"] == "Qwen/Qwen2.5-7B-Instruct"


def test_invalid_stack_file_names_the_field_and_touches_nothing(control_plane: ControlPlane, key: str,
                                                                tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "Pulumi.demo.yaml", [{**CHAT, "min_replicas": 3}])
    code, out = run(control_plane, key, stack, "--yes")
    assert code == 2
    assert "inferstack:deployments[0](chat).min_replicas" in out
    assert live(control_plane, key) == {}


def test_wrong_key_is_reported_not_a_traceback(control_plane: ControlPlane, tmp_path: Path) -> None:
    code, out = run(control_plane, "isk-not-a-key", write_stack(tmp_path / "Pulumi.demo.yaml", [CHAT]), "--yes")
    assert code == 1 and "Traceback" not in out and out.strip()
