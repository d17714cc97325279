"""The native REST API, the compatibility routes and tenant isolation, over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from support import SIM_SPEC, ControlPlane, wait_running


@pytest.fixture(scope="module")
def alice(plane: ControlPlane) -> httpx.Client:
    return plane.client(plane.create_key("alice"))


@pytest.fixture(scope="module")
def bob(plane: ControlPlane) -> httpx.Client:
    return plane.client(plane.create_key("bob"))


def test_create_reports_id_and_status_and_comes_up_running(alice: httpx.Client) -> None:
    created = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "api-chat", "hf_token": "hf_never_shown"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["deployment_id"].startswith("dep-") and body["status"] in ("created", "provisioning")
    assert "hf_never_shown" not in created.text and body["spec"]["hf_token_set"] is True
    running = wait_running(alice, body["deployment_id"])
    assert [r["status"] for r in running["replicas"]] == ["ready"]
    by_name = alice.get("/v1/deployments/api-chat").json()
    assert by_name["id"] == body["id"] and "hf_never_shown" not in str(by_name)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"min_replicas": 4, "max_replicas": 2}, "min_replicas"),
        ({"target_rps": -1}, "target_rps"),
        ({"hardware_profile": "gpu.unknown"}, "hardware_profile"),
        ({"engine": "tgi"}, "engine"),
        ({"engine_args": ["--api-key", "sk-proj4Fq9Zt7Lm2Xc8Vb1Nw6Ry3"]}, "engine_args"),  # stored in clear: refused
        ({"hf_model_id": "meta-llama/Llama-3.1-405B-Instruct", "engine": "vllm", "hardware_profile": "gpu.l4"},
         "hf_model_id"),
    ],
)
def test_an_invalid_spec_is_a_422_naming_the_field_and_creates_nothing(
    alice: httpx.Client, fields: dict[str, object], field: str
) -> None:
    before = [d["id"] for d in alice.get("/v1/deployments").json()["data"]]
    response = alice.post("/v1/deployments", json={**SIM_SPEC, **fields})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert [d["id"] for d in alice.get("/v1/deployments").json()["data"]] == before


def test_another_tenant_cannot_see_call_or_change_a_deployment(plane: ControlPlane, alice: httpx.Client,
                                                               bob: httpx.Client) -> None:
    mine = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "private"}).json()
    wait_running(alice, mine["id"])
    assert all(d["id"] != mine["id"] for d in bob.get("/v1/deployments").json()["data"])
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/stop"), ("GET", "/events")]:
        response = bob.request(method, f"/v1/deployments/{mine['id']}{path}",
                               json={"max_replicas": 2} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    bob_openai = openai.OpenAI(base_url=plane.url + "/v1", api_key=bob.headers["authorization"].split()[1])
    with pytest.raises(openai.NotFoundError):
        bob_openai.chat.completions.create(model=mine["id"], messages=[{"role": "user", "content": "hi"}])
    assert mine["id"] not in [m.id for m in bob_openai.models.list().data]
    assert alice.get(f"/v1/deployments/{mine['id']}").json()["status"] == "running"


def test_bad_or_missing_keys_get_openai_shaped_401s(plane: ControlPlane) -> None:
    assert httpx.get(plane.url + "/v1/deployments").status_code == 401
    stranger = openai.OpenAI(base_url=plane.url + "/v1", api_key="isk-not-a-key")
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])


def test_stop_refuses_requests_with_409_and_resume_brings_it_back(plane: ControlPlane, alice: httpx.Client) -> None:
    dep = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "stoppable"}).json()
    wait_running(alice, dep["id"])
    stopped = alice.post(f"/v1/deployments/{dep['id']}/stop").json()
    assert stopped["status"] == "stopped" and stopped["replicas"] == []
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=alice.headers["authorization"].split()[1])
    with pytest.raises(openai.ConflictError, match="stopped"):
        client.chat.completions.create(model="stoppable", messages=[{"role": "user", "content": "hi"}])
    alice.post(f"/v1/deployments/{dep['id']}/resume")
    wait_running(alice, dep["id"])
    answer = client.chat.completions.create(model="stoppable", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


def test_patch_changes_the_spec_and_rejects_bad_values_unchanged(alice: httpx.Client) -> None:
    dep = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "patchable"}).json()
    patched = alice.patch(f"/v1/deployments/{dep['id']}", json={"max_replicas": 3, "target_rps": 2.5})
    assert patched.status_code == 200 and patched.json()["spec"]["max_replicas"] == 3
    bad = alice.patch(f"/v1/deployments/{dep['id']}", json={"min_replicas": 5})
    assert bad.status_code == 422 and "min_replicas" in bad.json()["error"]["message"]
    assert alice.get(f"/v1/deployments/{dep['id']}").json()["spec"]["min_replicas"] == 1
    events = alice.get(f"/v1/deployments/{dep['id']}/events").json()["data"]
    assert any(e["kind"] == "updated" and "max_replicas" in e["message"] for e in events)


def test_dedicated_platform_routes_map_onto_the_spec(alice: httpx.Client) -> None:
    created = alice.post("/api/v2/external/inference/create", json={
        **SIM_SPEC, "target_rps": 4.0, "target_latency_p95_ms": 2000, "stabilisation_window": 120})
    assert created.status_code == 200, created.text
    deployment_id = created.json()["deployment_id"]
    got = alice.get("/api/v2/external/inference/get", params={"deployment_id": deployment_id}).json()
    assert got["target_rps"] == 4.0 and got["stabilisation_window"] == 120
    missing = alice.post("/api/v2/external/inference/create", json={"hf_model_id": "x/y"})
    assert missing.status_code == 422 and missing.json()["success"] is False
    assert "hardware_profile" in missing.json()["message"]


def test_sg_inf_routes_create_update_get_delete(alice: httpx.Client) -> None:
    created = alice.post("/sg_inf/create", json={
        "name": "sg-chat", "model": "inferstack/sim-chat", "inf_type": "llm",
        "initial_worker_config": {"min_workers": 0, "initial_workers_gpu": "L4"},
        "autoscaling_config": {"upper_allowed_latency_sec": 4, "lower_allowed_latency_sec": 1,
                               "scale_to_zero_timeout_sec": 900, "scaling_down_timeout_sec": 60},
        "max_price_per_hour": 5})
    assert created.status_code == 200, created.text
    assert created.json()["success"] is True
    deployment_id = created.json()["message"]["inf_id"]
    spec = alice.get(f"/sg_inf/{deployment_id}").json()["message"]["spec"]
    assert (spec["hardware_profile"], spec["min_replicas"], spec["target_latency_p95_ms"]) == ("gpu.l4", 0, 4000)
    assert (spec["scale_down_below_latency_ms"], spec["idle_timeout_s"]) == (1000, 900)
    updated = alice.put(f"/sg_inf/{deployment_id}", json={"imidiate_scale_down": True,
                                                           "autoscaling_config": {"time_window_sec": 30}})
    assert updated.json()["success"] is True
    assert alice.get(f"/sg_inf/{deployment_id}").json()["message"]["spec"]["metrics_window_s"] == 30
    unhonourable = alice.post("/sg_inf/create", json={"model": "x/y", "cloud_providers": ["gcp"],
                                                       "initial_worker_config": {"use_on_prem": True}})
    assert unhonourable.status_code == 422
    assert "cloud_providers: gcp not supported" in unhonourable.json()["message"]
    too_small = alice.post("/sg_inf/create", json={"model": "x/y", "initial_worker_config": {
        "initial_workers_gpu": "L4", "initial_workers_gpu_num": 4, "instance_types": ["g6.xlarge"]}})
    assert too_small.status_code == 422 and too_small.json()["success"] is False
    assert "g6.xlarge do not hold 4 x NVIDIA L4" in too_small.json()["message"]
    assert alice.delete(f"/sg_inf/{deployment_id}").json()["success"] is True
    assert alice.get(f"/sg_inf/{deployment_id}").status_code == 404


def test_sg_inf_placement_on_providers_this_control_plane_does_not_run_is_refused(alice: httpx.Client) -> None:
    """Every create path checks placement: /sg_inf too, naming its own field (the fields honoured on a
    control plane that runs those providers: tests/e2e/test_aws_serve.py)."""
    before = [d["id"] for d in alice.get("/v1/deployments").json()["data"]]
    refused = alice.post("/sg_inf/create", json={"name": "sg-elsewhere", "model": "x/y", "cloud_providers": ["AWS"]})
    assert refused.status_code == 422 and refused.json()["success"] is False
    assert refused.json()["message"].startswith("cloud_providers aws not run by this control plane")
    base_on_aws = alice.post("/sg_inf/create", json={"model": "acme/sql-lora", "base_model": "x/y",
                                                     "cloud_providers": ["AWS"]})
    assert base_on_aws.status_code == 422 and base_on_aws.json()["message"].startswith("cloud_providers aws")
    assert [d["id"] for d in alice.get("/v1/deployments").json()["data"]] == before  # nothing created


def test_the_openapi_document_describes_the_native_routes(plane: ControlPlane) -> None:
    paths = httpx.get(plane.url + "/openapi.json").json()["paths"]
    assert {"/v1/deployments", "/v1/deployments/{ref}", "/v1/deployments/{ref}/events"} <= paths.keys()


def test_the_control_plane_state_survives_a_restart(tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home").start()
    key = plane.create_key("carol")
    dep = plane.client(key).post("/v1/deployments", json={**SIM_SPEC, "name": "durable"}).json()
    wait_running(plane.client(key), dep["id"])
    plane.stop()
    plane = ControlPlane(home=tmp_path / "home").start()
    try:
        again = wait_running(plane.client(key), "durable")
        assert again["id"] == dep["id"]
    finally:
        plane.stop()


def test_a_provider_this_control_plane_does_not_run_is_a_422_at_create_and_patch(alice: httpx.Client) -> None:
    before = [d["id"] for d in alice.get("/v1/deployments").json()["data"]]
    refused = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "elsewhere", "providers": ["aws"]})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["param"] == "providers" and "aws" in error["message"] and "INFERSTACK_PROVIDERS" in error["message"]
    assert [d["id"] for d in alice.get("/v1/deployments").json()["data"]] == before  # nothing created

    created = alice.post("/v1/deployments", json={**SIM_SPEC, "name": "here", "providers": ["local"]})
    assert created.status_code == 201, created.text
    patched = alice.patch(f"/v1/deployments/{created.json()['id']}", json={"providers": ["local", "kubernetes"],
                                                                           "cloudburst": True})
    assert patched.status_code == 422 and patched.json()["error"]["param"] == "providers"
    assert alice.get(f"/v1/deployments/{created.json()['id']}").json()["spec"]["providers"] == ["local"]
    assert alice.delete(f"/v1/deployments/{created.json()['id']}").status_code == 200
