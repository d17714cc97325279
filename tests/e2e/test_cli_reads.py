"""What a user reads from the `inferstack` command against `inferstack serve`: whole ids at 80 columns and in
a pipe, plain usage lines, a delete that says what it did, the catalogue with the user's deployments, stopped
deployments under `status --all`, scaling reasons in plain words and errors that name a field once."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from support import INFERSTACK, ControlPlane, wait_for

NARROW = {"COLUMNS": "80"}  # and stdout is a pipe: not a terminal


def cli(plane: ControlPlane, key: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**plane.env, **NARROW}
    env.pop("INFERSTACK_API_KEY", None)
    if key is not None:
        env["INFERSTACK_API_KEY"] = key
    return subprocess.run([INFERSTACK, *args], env=env, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture
def plane(control_plane: ControlPlane) -> ControlPlane:
    return control_plane


def test_ids_are_whole_at_80_columns_and_in_a_pipe(plane: ControlPlane) -> None:
    key = plane.create_key("narrow")
    long_name = "a-deployment-name-long-enough-to-squeeze-every-column"
    created = cli(plane, key, "create", "inferstack/sim-chat-with-a-long-model-id", "--name", long_name,
                  "--engine", "sim", "-g", "cpu", "--wait").stdout
    dep_id = re.search(r"dep-[0-9a-z]+", created)
    assert dep_id, created
    listed = cli(plane, key, "list").stdout
    status = cli(plane, key, "status", long_name).stdout
    for shown in (created, listed, status):
        assert "…" not in shown, shown
        assert dep_id.group(0) in shown and "inferstack/sim-chat-with-a-long-model-id" in shown, shown
    replica = json.loads(cli(plane, key, "status", long_name, "-o", "json").stdout)["replicas"][0]["id"]
    assert replica in status
    row = next(line for line in listed.splitlines() if dep_id.group(0) in line)
    assert long_name in row  # in a pipe a row is one line: grep finds the id and the name together


def test_usage_lines_name_arguments_in_capitals() -> None:
    for command, usage in ((["create"], "create [OPTIONS] MODEL"), (["delete"], "delete [OPTIONS] DEPLOYMENT"),
                           (["status"], "status [OPTIONS] [DEPLOYMENT]"),
                           (["files", "upload"], "upload [OPTIONS] PATH")):
        shown = subprocess.run([INFERSTACK, *command, "--help"], capture_output=True, text=True, check=True,
                               env={"COLUMNS": "100", "PATH": ""}).stdout
        assert usage in shown and "{" not in shown.split("\n\n")[0], shown


def test_a_missing_key_says_which_variable_to_set(plane: ControlPlane) -> None:
    refused = cli(plane, None, "list", check=False)
    assert refused.returncode == 1
    assert "set INFERSTACK_API_KEY" in refused.stderr, refused.stderr


def test_delete_status_all_models_events_and_errors(plane: ControlPlane) -> None:
    key = plane.create_key("reader")
    kept = json.loads(cli(plane, key, "create", "inferstack/sim-chat", "--name", "kept", "--engine", "sim",
                          "-g", "cpu", "-o", "json").stdout)["id"]
    halted = json.loads(cli(plane, key, "create", "inferstack/sim-chat", "--name", "halted", "--engine", "sim",
                            "-g", "cpu", "--min-replicas", "0", "-o", "json").stdout)["id"]
    cli(plane, key, "stop", "halted")

    live = cli(plane, key, "status").stdout
    everything = cli(plane, key, "status", "--all").stdout
    assert kept in live and halted not in live
    assert kept in everything and halted in everything and "stopped" in everything

    models = cli(plane, key, "models").stdout
    assert "meta-llama/Llama-3.1-8B-Instruct" in models and kept in models and halted in models
    as_json = json.loads(cli(plane, key, "models", "-o", "json").stdout)
    assert {d["id"] for d in as_json["deployments"]} == {kept, halted}
    assert any(m["hf_model_id"] == "meta-llama/Llama-3.1-8B-Instruct" for m in as_json["catalogue"])

    def started() -> list[str]:
        return [e["message"] for e in json.loads(cli(plane, key, "events", kept, "-o", "json").stdout)
                if e["kind"] == "scaled"]

    scaled = wait_for(started, timeout=60, what="the first scaling event")
    assert "0 -> 1 replicas: starting min_replicas (1)" in scaled, scaled

    deleted = cli(plane, key, "delete", "halted")
    assert deleted.stdout.strip() == f"deleted {halted}"
    assert json.loads(cli(plane, key, "delete", "kept", "-o", "json").stdout)["deployment_id"] == kept

    refused = cli(plane, key, "create", "meta-llama/Llama-3.1-70B-Instruct", "-g", "gpu.l4", check=False)
    assert refused.returncode == 1 and "needs about 141.2 GB" in refused.stderr
    assert refused.stderr.count("hf_model_id") == 1, refused.stderr
