"""API keys over real HTTP: the /v1/keys routes, what an inference-only key may do, and revocation and
rotation taking effect at once on both the REST routes and the gateway."""

from __future__ import annotations

import httpx
import pytest

from support import SIM_SPEC, ControlPlane

CHAT = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> httpx.Client:
    return plane.client(plane.create_key("keys-team"))


def new_key(plane: ControlPlane, admin: httpx.Client, **body: object) -> tuple[dict[str, object], httpx.Client]:
    created = admin.post("/v1/keys", json=body)
    assert created.status_code == 201, created.text
    return created.json(), plane.client(created.json()["key"])


def test_an_admin_creates_and_lists_keys_and_the_key_is_shown_only_once(
        plane: ControlPlane, admin: httpx.Client) -> None:
    created, _ = new_key(plane, admin, limits={"requests_per_minute": 60, "max_concurrent_requests": 4},
                         expires_in_s=3600)
    assert created["scope"] == "inference" and created["status"] == "active"  # least privilege by default
    assert str(created["key"]).startswith(str(created["prefix"]))
    assert created["limits"] == {"requests_per_minute": 60, "tokens_per_minute": None, "max_concurrent_requests": 4}
    assert created["expires_at"] == pytest.approx(created["created_at"] + 3600)
    listed = admin.get("/v1/keys")
    assert listed.status_code == 200 and created["id"] in [k["id"] for k in listed.json()["data"]]
    assert str(created["key"]) not in listed.text and "key_hash" not in listed.text


def test_an_inference_key_calls_models_but_cannot_manage(plane: ControlPlane, admin: httpx.Client) -> None:
    target = admin.post("/v1/deployments", json={**SIM_SPEC, "name": "managed", "min_replicas": 0})
    assert target.status_code == 201, target.text
    deployment = target.json()["id"]
    _, inference = new_key(plane, admin, scope="inference")

    refusals = [inference.post("/v1/deployments", json={**SIM_SPEC, "name": "sneaky"}),
                inference.patch(f"/v1/deployments/{deployment}", json={"max_replicas": 2}),
                inference.post(f"/v1/deployments/{deployment}/stop"),
                inference.delete(f"/v1/deployments/{deployment}"),
                inference.get("/v1/keys"), inference.post("/v1/keys", json={"scope": "admin"})]
    for refused in refusals:
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
    compat = inference.post("/sg_inf/create", json={"name": "x", "model": "org/m"})
    assert compat.status_code == 403 and compat.json()["success"] is False  # in the compat routes' own shape

    after = admin.get(f"/v1/deployments/{deployment}").json()
    assert after["status"] != "deleted" and after["spec"]["max_replicas"] == 1  # nothing changed
    assert "sneaky" not in [d["name"] for d in admin.get("/v1/deployments").json()["data"]]
    for path in ("/v1/models", "/v1/deployments", "/v1/files", "/v1/batches", f"/v1/deployments/{deployment}"):
        assert inference.get(path).status_code == 200, path
    assert inference.post("/v1/chat/completions", json=CHAT).status_code == 404  # past auth: no such model


def test_a_revoked_key_is_refused_at_once_on_rest_and_on_the_gateway(plane: ControlPlane, admin: httpx.Client) -> None:
    created, doomed = new_key(plane, admin)
    assert doomed.get("/v1/models").status_code == 200  # both caches now hold the key
    assert doomed.post("/v1/chat/completions", json=CHAT).status_code == 404
    revoked = admin.post(f"/v1/keys/{created['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    for refused in (doomed.get("/v1/models"), doomed.post("/v1/chat/completions", json=CHAT)):
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_rotation_gives_a_new_key_with_the_same_grant_and_retires_the_old_one(
        plane: ControlPlane, admin: httpx.Client) -> None:
    old, old_client = new_key(plane, admin, limits={"tokens_per_minute": 1000}, expires_in_s=600)
    assert old_client.get("/v1/models").status_code == 200
    rotated = admin.post(f"/v1/keys/{old['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["replaces"] == old["id"] and new["key"] != old["key"]
    assert (new["scope"], new["limits"]) == (old["scope"], old["limits"])
    assert new["expires_at"] - new["created_at"] == pytest.approx(600)  # the old key's lifetime
    assert old_client.get("/v1/models").status_code == 401
    assert plane.client(new["key"]).get("/v1/models").status_code == 200
    again = admin.post(f"/v1/keys/{old['id']}/rotate")
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_revoked"


def test_bad_key_requests_are_refused_and_change_nothing(plane: ControlPlane, admin: httpx.Client) -> None:
    before = len(admin.get("/v1/keys").json()["data"])
    for body in ({"scope": "root"}, {"limits": {"requests_per_minute": 0}}, {"expires_in_s": -1},
                 {"limits": {"rpm": 5}}):
        refused = admin.post("/v1/keys", json=body)
        assert refused.status_code == 422 and refused.json()["error"]["type"] == "invalid_request_error", body
    for bad_id in ("key%20x", "k" * 41):
        refused = admin.post(f"/v1/keys/{bad_id}/revoke")
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "path.key_id", bad_id
    # A control character anywhere in a path names nothing that can exist (api/edge.py): a 404, never a 500.
    refused = admin.post("/v1/keys/key-%00/revoke")
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found_error"
    other = plane.client(plane.create_key("someone-else"))
    someone_elses = other.get("/v1/keys").json()["data"][0]["id"]
    for action in ("revoke", "rotate"):
        missing = admin.post(f"/v1/keys/{someone_elses}/{action}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    assert other.get("/v1/models").status_code == 200
    assert len(admin.get("/v1/keys").json()["data"]) == before
