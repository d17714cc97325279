"""`inferstack logs DEPLOYMENT [REPLICA]` and its REST route against `inferstack serve`: a local
replica's output, the last lines, scoped to the caller's tenant."""

from __future__ import annotations

from support import SIM_SPEC, ControlPlane, wait_running


def test_logs_show_a_replicas_output_to_its_tenant_only(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("acme")
    rest = control_plane.client(key)
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "chat", "min_replicas": 1})
    assert created.status_code == 201, created.text
    dep_id = created.json()["id"]
    wait_running(rest, dep_id)
    (replica_id,) = [r["id"] for r in rest.get(f"/v1/deployments/{dep_id}/replicas").json()["data"]]

    [entry] = rest.get(f"/v1/deployments/{dep_id}/logs", params={"tail": 5}).json()["data"]
    assert entry["replica_id"] == replica_id and entry["status"] == "ready" and entry["unavailable"] is None
    assert any("sim engine ready on http://127.0.0.1:" in line for line in entry["lines"]), entry

    shown = control_plane.cli(key, "logs", "chat", replica_id, "--tail", "1").stdout
    assert f"==> {replica_id} (ready)" in shown and "sim engine ready" in shown

    missing = rest.get(f"/v1/deployments/{dep_id}/logs", params={"replica": "rep-nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "replica_not_found"
    assert rest.get(f"/v1/deployments/{dep_id}/logs", params={"tail": 0}).status_code == 422
    other = control_plane.client(control_plane.create_key("someone-else"))
    assert other.get(f"/v1/deployments/{dep_id}/logs").status_code == 404
