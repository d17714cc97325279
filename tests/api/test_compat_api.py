"""What a user of the replaced platforms, or of an OpenAI SDK, meets first, over real HTTP: the
inference platform's documented payloads and answers, its field refusals, bodies sent without a JSON
`Content-Type`, malformed JSON, and `client.models.retrieve`."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import openai
import pytest

from support import SIM_SPEC, ControlPlane

# The inference platform's documented create body (its page drops three closing braces; put back here),
# with its "string" placeholders filled in as a user would. Its other values are the page's own.
DOCUMENTED_CREATE: dict[str, Any] = {
    "name": "llama-dep",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "base_model": "meta-llama/Llama-3.1-8B-Instruct",
    "inf_type": "llm",
    "hf_token": "hf_documented_example_token",
    "allow_spot_instances": False,
    "logs_store": "",
    "cloud_providers": [],
    "initial_worker_config": {
        "min_workers": 0,
        "initial_workers_gpu": "A100",
        "initial_workers_gpu_num": 0,
        "use_same_gpus_when_scaling": False,
        "instance_types": ["p4d.24xlarge"],
        "use_on_prem": False,
        "use_cloudburst": False,
        "on_prem_node_ids": [],
    },
    "autoscaling_config": {
        "enable_speedup_shared": False,
        "lower_allowed_latency_sec": 1,
        "scale_to_zero_timeout_sec": 1800,
        "scaling_down_timeout_sec": 1200,
        "scaling_up_timeout_sec": 1200,
        "time_window_sec": 300,
        "upper_allowed_latency_sec": 4,
    },
    "max_price_per_hour": 0,
    "max_throughput_rate": 0,
}
DOCUMENTED_GATEWAY = {"name": "DATACRUNCH", "region": "string"}


@pytest.fixture(scope="module")
def key(plane: ControlPlane) -> str:
    return plane.create_key("carol")


@pytest.fixture(scope="module")
def carol(plane: ControlPlane, key: str) -> httpx.Client:
    return plane.client(key)


def deployment_ids(client: httpx.Client) -> list[str]:
    return [d["id"] for d in client.get("/v1/deployments").json()["data"]]


def test_the_documented_create_payload_is_accepted_and_answered_in_the_documented_shape(
        carol: httpx.Client) -> None:
    created = carol.post("/sg_inf/create", json=DOCUMENTED_CREATE)
    assert created.status_code == 200, created.text
    assert created.json() == {"success": True, "message": {"inf_id": created.json()["message"]["inf_id"]}}
    inf_id = created.json()["message"]["inf_id"]
    got = carol.get(f"/sg_inf/{inf_id}").json()["message"]
    spec = got["spec"]
    assert (got["id"], got["name"], spec["hf_model_id"], spec["hardware_profile"]) == (
        inf_id, "llama-dep", "meta-llama/Llama-3.1-8B-Instruct", "gpu.a100")
    assert (spec["min_replicas"], spec["gpus_per_replica"], spec["instance_types"]) == (0, 1, ["p4d.24xlarge"])
    assert (spec["scale_down_below_latency_ms"], spec["target_latency_p95_ms"]) == (1000, 4000)
    assert (spec["idle_timeout_s"], spec["stabilisation_window"], spec["scale_up_cooldown_s"],
            spec["metrics_window_s"]) == (1800, 1200, 1200, 300)
    assert spec["max_price_per_hour"] is None and spec["cloudburst"] is False and spec["hf_token_set"] is True
    assert "hf_documented_example_token" not in json.dumps(got)
    assert carol.delete(f"/sg_inf/{inf_id}").json()["success"] is True


def test_the_documented_gateway_placement_is_refused_naming_it_and_creates_nothing(carol: httpx.Client) -> None:
    before = deployment_ids(carol)
    refused = carol.post("/sg_inf/create", json={**DOCUMENTED_CREATE, "gateway_config": DOCUMENTED_GATEWAY})
    assert refused.status_code == 422
    assert refused.json() == {"success": False, "message": "Not supported by inferstack: gateway_config (the "
                                                           "gateway is part of the control plane, where it runs)"}
    assert deployment_ids(carol) == before


def _with(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(DOCUMENTED_CREATE)
    *parents, leaf = path.split(".")
    section = body
    for parent in parents:
        section = section[parent]
    section[leaf] = value
    return body


@pytest.mark.parametrize(("path", "value", "why"), [
    ("logs_store", "s3://team-bucket/inference-logs", "replica logs stay where the replica runs"),
    ("data_path", "org/finetune-set", "does not finetune"),
    ("autoscaling_config.enable_speedup_shared", True, "never shared"),
    ("initial_worker_config.warm_pool", 2, "not a field of this API"),
    ("priority", "high", "not a field of this API"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_platform_field_once(
        carol: httpx.Client, path: str, value: Any, why: str) -> None:
    before = deployment_ids(carol)
    refused = carol.post("/sg_inf/create", json=_with(path, value))
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert message.startswith(f"Not supported by inferstack: {path} (") and why in message, message
    assert message.count(path.split(".")[-1]) == 1 and "Extra inputs" not in message
    assert deployment_ids(carol) == before


@pytest.mark.parametrize(("path", "value"), [
    ("initial_worker_config.use_same_gpus_when_scaling", True),  # identical replicas satisfy both values
    ("logs_store", None),
    ("data_path", ""),
    ("gateway_config", {}),
])
def test_values_inferstack_already_satisfies_are_accepted(carol: httpx.Client, path: str, value: Any) -> None:
    created = carol.post("/sg_inf/create", json={**_with(path, value), "name": None})
    assert created.status_code == 200, created.text
    assert carol.delete(f"/sg_inf/{created.json()['message']['inf_id']}").json()["success"] is True


def test_a_spec_refusal_names_the_platform_fields_not_the_native_ones(carol: httpx.Client) -> None:
    refused = carol.post("/sg_inf/create", json={**DOCUMENTED_CREATE, "initial_worker_config": {
        "min_workers": 3, "max_workers": 2, "initial_workers_gpu": "L4"}})
    assert refused.status_code == 422
    assert refused.json()["message"] == ("initial_worker_config.min_workers (3) must not exceed "
                                         "initial_worker_config.max_workers (2)")
    latency = carol.post("/sg_inf/create", json=_with("autoscaling_config.lower_allowed_latency_sec", 5))
    assert latency.status_code == 422 and latency.json()["message"] == (
        "autoscaling_config.lower_allowed_latency_sec (5) must be below "
        "autoscaling_config.upper_allowed_latency_sec (4)")


def test_put_with_a_floor_above_the_ceiling_raises_the_ceiling_and_says_so(carol: httpx.Client) -> None:
    created = carol.post("/sg_inf/create", json={"name": "sg-floor", "model": SIM_SPEC["hf_model_id"],
                                                  "initial_worker_config": {"min_workers": 0,
                                                                            "initial_workers_gpu": "CPU"}})
    inf_id = created.json()["message"]["inf_id"]
    assert carol.get(f"/sg_inf/{inf_id}").json()["message"]["spec"]["max_replicas"] == 1
    updated = carol.put(f"/sg_inf/{inf_id}", json={"initial_worker_config": {"min_workers": 3}})
    assert updated.status_code == 200, updated.text
    assert updated.json() == {"success": True, "message": f"Deployment {inf_id} updated; max workers raised "
                                                          "from 1 to 3 with min_workers"}
    spec = carol.get(f"/sg_inf/{inf_id}").json()["message"]["spec"]
    assert (spec["min_replicas"], spec["max_replicas"]) == (3, 3)
    within = carol.put(f"/sg_inf/{inf_id}", json={"initial_worker_config": {"min_workers": 0}})
    assert within.json()["message"] == f"Deployment {inf_id} updated"
    assert carol.get(f"/sg_inf/{inf_id}").json()["message"]["spec"]["max_replicas"] == 3
    carol.delete(f"/sg_inf/{inf_id}")


def test_malformed_json_is_checked_after_the_key_and_said_plainly(plane: ControlPlane, carol: httpx.Client) -> None:
    broken = '{"model": "m", "initial_worker_config": {"min_workers": 1,}}'
    anonymous = httpx.post(plane.url + "/sg_inf/create", content=broken)
    assert anonymous.status_code == 401 and anonymous.json()["success"] is False
    compat = carol.post("/sg_inf/create", content=broken)
    assert compat.status_code == 400 and compat.json()["success"] is False
    message = compat.json()["message"]
    assert message.startswith("The request body is not valid JSON: ") and "decode error" not in message
    assert f"at character {broken.index(',}') + 1}" in message
    native = carol.post("/v1/deployments", content=broken, headers={"Content-Type": "application/json"})
    assert native.status_code == 400 and native.json()["error"]["code"] == "invalid_json"
    assert httpx.post(plane.url + "/v1/deployments", content=broken).json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_a_json_body_without_its_content_type_is_read_as_json(carol: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    name = f"no-type-{'form' if content_type else 'none'}"
    created = carol.post("/v1/deployments", content=json.dumps({**SIM_SPEC, "name": name}), headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"  # what the README and the dedicated platform promise
    patched = carol.patch(f"/v1/deployments/{name}", content='{"max_replicas": 3}', headers=headers)
    assert patched.status_code == 200 and patched.json()["spec"]["max_replicas"] == 3
    assert carol.delete(f"/v1/deployments/{name}").status_code == 200


def test_the_dedicated_platform_create_answers_created(carol: httpx.Client) -> None:
    created = carol.post("/api/v2/external/inference/create", content=json.dumps({
        **SIM_SPEC, "target_rps": 4.0, "target_latency_p95_ms": 2000, "stabilisation_window": 120}))
    assert created.status_code == 200, created.text
    assert (created.json()["success"], created.json()["status"]) == (True, "created")
    carol.delete(f"/v1/deployments/{created.json()['deployment_id']}")


def test_the_openai_client_retrieves_a_model_by_id_or_name(plane: ControlPlane, carol: httpx.Client,
                                                           key: str) -> None:
    created = carol.post("/v1/deployments", json={**SIM_SPEC, "name": "retrievable"}).json()
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key)
    by_id = client.models.retrieve(created["id"])
    assert (by_id.id, by_id.object) == (created["id"], "model") and by_id.owned_by.startswith("ten-")
    assert by_id.created == int(created["created_at"]) and by_id.model_extra["name"] == "retrievable"
    assert client.models.retrieve("retrievable").id == created["id"]
    assert created["id"] in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody-has-this")
    other = openai.OpenAI(base_url=plane.url + "/v1", api_key=plane.create_key("dave"))
    with pytest.raises(openai.NotFoundError):  # another tenant's model is indistinguishable from none
        other.models.retrieve(created["id"])
    carol.delete(f"/v1/deployments/{created['id']}")


def test_a_wrong_method_on_an_openai_route_is_a_405_the_openai_client_understands(plane: ControlPlane,
                                                                                   key: str) -> None:
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.get("/chat/completions", cast_to=object)
    assert caught.value.status_code == 405 and caught.value.response.headers["allow"] == "POST"
    assert caught.value.body["type"] == "invalid_request_error" and "POST" in caught.value.body["message"]
