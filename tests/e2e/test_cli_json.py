"""The installed `inferstack` command with `-o json`, against `inferstack serve` on SQLite and on
PostgreSQL: a deployment's whole life (create, list, status, events, update, stop, resume, delete)
and the model catalogue, each read back as JSON the way a script would."""

from __future__ import annotations

import json
from typing import Any

from support import ControlPlane, wait_for


def test_a_deployments_life_through_the_cli_as_json(plane_on_each_store: ControlPlane) -> None:
    plane = plane_on_each_store
    key = plane.create_key("ops")

    def cli(*args: str) -> Any:
        return json.loads(plane.cli(key, *args, "-o", "json").stdout)

    created = cli("create", "inferstack/sim-chat", "--name", "scripted", "--engine", "sim", "-g", "cpu",
                  "--max-replicas", "2", "--wait")
    dep_id = created["id"]
    assert created["status"] == "running" and created["name"] == "scripted"

    listed = cli("list")
    assert [(d["id"], d["name"], d["status"]) for d in listed] == [(dep_id, "scripted", "running")]

    status = cli("status", "scripted")
    assert status["id"] == dep_id and [r["status"] for r in status["replicas"]] == ["ready"]
    assert status["cost"]["price_per_replica_hour"] == 0.0 and status["spec"]["max_replicas"] == 2

    updated = cli("update", "scripted", "--max-replicas", "3", "--target-rps", "4")
    assert (updated["spec"]["max_replicas"], updated["spec"]["target_rps"]) == (3, 4.0)

    stopped = cli("stop", dep_id)
    assert stopped["status"] == "stopped"
    wait_for(lambda: cli("status", dep_id)["replicas"] == [], timeout=30, what="no live replica once stopped")
    resumed = cli("resume", dep_id)
    assert resumed["status"] in ("provisioning", "running")
    wait_for(lambda: cli("status", dep_id)["status"] == "running", timeout=30, what="running again")

    events = cli("events", dep_id, "--limit", "200")
    assert {"created", "updated", "resumed", "replica_ready"} <= {e["kind"] for e in events}, events
    assert "stopped" in [e["data"].get("after") for e in events if e["kind"] == "status"]
    assert all(isinstance(e["at"], float) and e["message"] for e in events)

    assert cli("delete", "scripted") == {"deployment_id": dep_id, "object": "deployment", "deleted": True}
    assert cli("list") == []

    models = cli("models")
    assert models["deployments"] == []
    llama = next(m for m in models["catalogue"] if m["hf_model_id"] == "meta-llama/Llama-3.1-8B-Instruct")
    assert llama["task"] == "generate" and llama["gpus_per_replica"]["gpu.h100"] == 1
