"""LoRA adapters on real vLLM (the CPU build), end to end: `inferstack serve` starts a replica of the tiny
test Llama with an adapter built here, the official openai client shows that the adapter and the base
answer differently under greedy decoding, and a second adapter added at run time, from S3 (the moto server;
the control plane fetches it), is served by the same replica, without a restart. One vLLM start (about a
minute on 2 cores)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import openai
import pytest

from support import TINY_VLLM_SPEC, ControlPlane, vllm_python, wait_running

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "tests" / "lora_adapter.py"


def complete(client: openai.OpenAI, model: str) -> str:
    answer = client.completions.create(model=model, prompt="hello world", max_tokens=10, temperature=0)
    assert answer.model == model
    return answer.choices[0].text


def test_adapters_answer_differently_and_one_added_at_run_time_from_s3_needs_no_restart(
        moto_reset: str, tiny_model: Path, tmp_path: Path) -> None:
    python = vllm_python()
    assert python is not None  # tiny_model skipped otherwise
    for name, seed in (("a1", "1"), ("a2", "2")):
        subprocess.run([python, str(ADAPTER), str(tmp_path / name), "8", seed], check=True, timeout=300)
    s3 = boto3.client("s3", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="adapters")
    for file in (tmp_path / "a2").iterdir():
        s3.upload_file(str(file), "adapters", f"tuned/a2/{file.name}")
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_VLLM_PYTHON": python,
                                                            "AWS_ENDPOINT_URL": moto_reset}).start()
    try:
        key = plane.create_key("lora-team")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={
            **TINY_VLLM_SPEC, "hf_model_id": str(tiny_model),
            "adapters": [{"name": "a1", "source": str(tmp_path / "a1"), "rank": 8}]})
        assert created.status_code == 201, created.text
        replicas = wait_running(rest, created.json()["id"], timeout=400)["replicas"]
        client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)

        base, first = complete(client, "tiny"), complete(client, "tiny:a1")
        assert first != base and complete(client, "tiny:a1") == first  # greedy: the same again
        models = {m.id: m.model_extra for m in client.models.list().data}
        assert models["tiny:a1"]["parent"] == created.json()["id"]

        added = rest.post("/v1/deployments/tiny/adapters", json={"name": "a2", "source": "s3://adapters/tuned/a2"})
        assert added.status_code == 201 and added.json()["loaded_replicas"] == 1, added.text
        second = complete(client, "tiny:a2")
        assert second not in (base, first)
        now = rest.get("/v1/deployments/tiny").json()["replicas"]
        assert [(r["id"], r["started_at"]) for r in now] == [(r["id"], r["started_at"]) for r in replicas]

        refused = rest.post("/v1/deployments/tiny/adapters", json={"name": "none", "source": str(tmp_path)})
        assert refused.status_code == 422 and "No adapter found" in refused.json()["error"]["message"]
        assert rest.delete("/v1/deployments/tiny/adapters/a2").status_code == 200
        with pytest.raises(openai.NotFoundError):
            complete(client, "tiny:a2")
        assert complete(client, "tiny:a1") == first and complete(client, "tiny") == base
    finally:
        plane.stop()
