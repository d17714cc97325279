"""LoRA adapters on a base deployment, as a user meets them through `inferstack serve` on the sim engine
(which serves vLLM's adapter routes and errors): REST, the CLI, the official openai client, batches, the
compatibility route, /metrics and status. The same flow on real vLLM: tests/e2e/test_vllm_lora.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lora_adapter import write_config
from support import SIM_SPEC, ControlPlane, wait_for, wait_running


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, str, Path]]:
    root = tmp_path_factory.mktemp("lora")
    control = ControlPlane(home=root / "home").start()
    try:
        key = control.create_key("team")
        rest = control.client(key)
        created = rest.post("/v1/deployments", json={
            **SIM_SPEC, "name": "chat", "engine_args": ["--ttft-ms", "1", "--tokens-per-s", "0"],
            "adapters": [{"name": "sql", "source": str(write_config(root / "sql"))}]})
        assert created.status_code == 201, created.text
        wait_running(rest, created.json()["id"])
        yield control, key, root
    finally:
        control.stop()


def ask(client: openai.OpenAI, model: str, prompt: str = "Write a greeting") -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                          max_tokens=12, temperature=0)


def loaded_on(rest: httpx.Client, adapter: str) -> int:
    found = [a for a in rest.get("/v1/deployments/chat/adapters").json()["data"] if a["name"] == adapter]
    return found[0]["loaded_replicas"] if found else -1


def test_an_adapter_answers_other_than_its_base_and_is_listed_with_its_parent(plane) -> None:
    control, key, _ = plane
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    base, tuned = ask(client, "chat"), ask(client, "chat:sql")
    assert tuned.model == "chat:sql" and base.model == "chat"
    assert tuned.choices[0].message.content != base.choices[0].message.content
    assert ask(client, "chat:sql").choices[0].message.content == tuned.choices[0].message.content  # greedy
    models = {m.id: m for m in client.models.list().data}
    dep_id = control.client(key).get("/v1/deployments/chat").json()["id"]
    assert models["chat:sql"].model_extra["parent"] == dep_id and models[dep_id].model_extra["parent"] is None


def test_an_adapter_is_retrieved_by_its_model_name_and_another_tenant_finds_nothing(plane) -> None:
    control, key, _ = plane
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    dep_id = control.client(key).get("/v1/deployments/chat").json()["id"]
    sql = client.models.retrieve("chat:sql")
    assert (sql.id, sql.object, sql.model_extra["parent"], sql.model_extra["name"]) == ("chat:sql", "model", dep_id,
                                                                                       "sql")
    assert sql.model_dump() == next(m for m in client.models.list().data if m.id == "chat:sql").model_dump()
    assert client.models.retrieve("chat").id == dep_id
    for missing in ("chat:nope", "nope:sql"):
        with pytest.raises(openai.NotFoundError) as unknown:
            client.models.retrieve(missing)
        assert unknown.value.code == "model_not_found" and missing in unknown.value.message
    other = openai.OpenAI(base_url=control.url + "/v1", api_key=control.create_key("stranger"), max_retries=0)
    with pytest.raises(openai.NotFoundError) as foreign:
        other.models.retrieve("chat:sql")
    assert foreign.value.code == "model_not_found"


def test_an_adapter_added_at_run_time_is_served_by_the_same_replica(plane) -> None:
    control, key, root = plane
    rest = control.client(key)
    before = rest.get("/v1/deployments/chat").json()["replicas"]
    added = control.cli(key, "adapters", "add", "chat", "legal", str(write_config(root / "legal")), "-o", "json")
    assert json.loads(added.stdout)["model"] == "chat:legal"
    assert json.loads(added.stdout)["loaded_replicas"] == 1  # loaded before the answer came back
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    assert ask(client, "chat:legal").model == "chat:legal"
    after = rest.get("/v1/deployments/chat").json()["replicas"]
    assert [(r["id"], r["started_at"]) for r in after] == [(r["id"], r["started_at"]) for r in before]
    listed = control.cli(key, "adapters", "list", "chat").stdout
    assert "chat:legal" in listed and "chat:sql" in listed

    removed = control.cli(key, "adapters", "remove", "chat", "legal", "-o", "json")
    assert json.loads(removed.stdout)["deleted"] is True
    with pytest.raises(openai.NotFoundError):
        ask(client, "chat:legal")
    assert loaded_on(rest, "legal") == -1


def test_unknown_adapters_and_other_tenants_get_openai_404s(plane) -> None:
    control, key, _ = plane
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as unknown:
        ask(client, "chat:nope")
    assert unknown.value.code == "model_not_found" and "chat:nope" in unknown.value.message
    other_key = control.create_key("other-team")
    other = openai.OpenAI(base_url=control.url + "/v1", api_key=other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        ask(other, "chat:sql")
    assert "chat:sql" not in [m.id for m in other.models.list().data]
    outsider = control.client(other_key)
    assert outsider.get("/v1/deployments/chat/adapters").status_code == 404
    assert outsider.post("/v1/deployments/chat/adapters", json={"name": "x", "source": "/tmp"}).status_code == 404
    assert outsider.delete("/v1/deployments/chat/adapters/sql").status_code == 404
    assert loaded_on(control.client(key), "sql") == 1


def test_what_an_engine_refuses_or_the_limits_exceed_is_a_clear_error_that_changes_nothing(plane) -> None:
    control, key, root = plane
    rest = control.client(key)
    before = rest.get("/v1/deployments/chat").json()["spec"]["adapters"]
    empty = root / "not-an-adapter"
    empty.mkdir()
    refused = rest.post("/v1/deployments/chat/adapters", json={"name": "bad", "source": str(empty)})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "adapter_refused"
    assert "No adapter found" in refused.json()["error"]["message"]
    too_wide = rest.post("/v1/deployments/chat/adapters",
                         json={"name": "wide", "source": str(write_config(root / "wide", rank=64))})
    assert too_wide.status_code == 422 and "max_lora_rank" in too_wide.json()["error"]["message"]
    twice = rest.post("/v1/deployments/chat/adapters", json={"name": "sql", "source": "org/other"})
    assert twice.status_code == 409
    assert rest.get("/v1/deployments/chat").json()["spec"]["adapters"] == before

    over = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "tight", "max_loras": 1, "adapters": [
        {"name": "a", "source": "org/a"}, {"name": "b", "source": "org/b"}]})
    assert over.status_code == 422 and "exceed max_loras (1)" in over.json()["error"]["message"]
    ranked = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "tight", "max_lora_rank": 8, "adapters": [
        {"name": "a", "source": "org/a", "rank": 16}]})
    assert ranked.status_code == 422 and "exceed max_lora_rank (8)" in ranked.json()["error"]["message"]
    assert rest.get("/v1/deployments/tight").status_code == 404


def test_adapter_traffic_shows_in_metrics_status_and_batches(plane) -> None:
    control, key, _ = plane
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    rest = control.client(key)
    before = next(a for a in rest.get("/v1/deployments/chat").json()["adapters"] if a["name"] == "sql")
    for _ in range(3):
        ask(client, "chat:sql")
    stream = client.chat.completions.create(model="chat:sql", messages=[{"role": "user", "content": "s"}],
                                            max_tokens=5, stream=True, stream_options={"include_usage": True})
    assert list(stream)[-1].usage.completion_tokens == 5

    lines = [json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "chat:sql", "max_tokens": 4,
                                  "messages": [{"role": "user", "content": f"line {i}"}]}}) for i in range(4)]
    upload = client.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, timeout=60,
                    what="the batch on the adapter")
    results = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in results) == [f"q{i}" for i in range(4)]
    assert {r["response"]["body"]["model"] for r in results} == {"chat:sql"}

    after = next(a for a in rest.get("/v1/deployments/chat").json()["adapters"] if a["name"] == "sql")
    assert after["requests"] - before["requests"] == 3 + 1 + 4
    assert after["completion_tokens"] - before["completion_tokens"] == 3 * 12 + 5 + 4 * 4
    assert after["mean_latency_s"] is not None
    families = {f.name: f for f in text_string_to_metric_families(rest.get("/metrics").text)}
    requests = [s for s in families["inferstack_adapter_requests"].samples
                if s.labels["adapter"] == "sql" and s.name.endswith("_total")]
    assert sum(s.value for s in requests) == after["requests"]
    tokens = {s.labels["kind"]: s.value for s in families["inferstack_adapter_tokens"].samples
              if s.labels["adapter"] == "sql" and s.name.endswith("_total")}
    assert tokens["completion"] == after["completion_tokens"]
    status = control.cli(key, "status", "chat").stdout
    assert "chat:sql" in status and str(after["requests"]) in status


def test_the_compatibility_create_with_a_base_model_extends_its_deployment(plane) -> None:
    control, key, root = plane
    rest = control.client(key)
    made = rest.post("/sg_inf/create", json={"name": "support", "model": str(write_config(root / "support")),
                                              "base_model": SIM_SPEC["hf_model_id"]})
    assert made.status_code == 200, made.text
    answer = made.json()  # the platform's documented shape, plus the model to call the adapter by
    assert answer["success"] is True and answer["message"]["model"] == "chat:support"
    assert answer["message"]["base"] == "extended"
    shown = rest.get(f"/sg_inf/{answer['message']['inf_id']}").json()["message"]["spec"]["adapters"]
    assert "support" in [a["name"] for a in shown]
    assert loaded_on(rest, "support") == 1  # loaded before the answer came back
    client = openai.OpenAI(base_url=control.url + "/v1", api_key=key, max_retries=0)
    assert ask(client, "chat:support").model == "chat:support"
    refused = rest.post("/sg_inf/create", json={"model": "not a repo", "base_model": SIM_SPEC["hf_model_id"]})
    assert refused.status_code == 422 and refused.json()["success"] is False

    # No deployment of that base model yet: one is created, holding the adapter.
    fresh = rest.post("/sg_inf/create", json={"model": "org/summaries-lora", "base_model": "org/base-model",
                                               "initial_worker_config": {"min_workers": 0}})
    assert fresh.status_code == 200, fresh.text
    dep_id = fresh.json()["message"]["inf_id"]
    assert fresh.json()["message"] == {"inf_id": dep_id, "model": f"{dep_id}:summaries-lora", "base": "created"}
    spec = rest.get(f"/sg_inf/{dep_id}").json()["message"]["spec"]
    assert spec["hf_model_id"] == "org/base-model"
    assert spec["adapters"] == [{"name": "summaries-lora", "source": "org/summaries-lora", "rank": None}]
    assert rest.delete(f"/sg_inf/{dep_id}").status_code == 200
