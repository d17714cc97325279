"""LoRA adapters kept in S3, as a user meets them through `inferstack serve` on the sim engine: the control
plane fetches them from S3 (the moto server here) before a replica starts with one or loads one, and the
official openai client is served by them; one that cannot be read is a 422 that changes nothing."""

from __future__ import annotations

from pathlib import Path

import boto3
import openai

from lora_adapter import write_config
from support import SIM_SPEC, ControlPlane, wait_running

SECRET = "adapter-test-secret-key-9f3c"


def test_adapters_from_s3_are_served_and_one_that_cannot_be_read_changes_nothing(moto_reset: str,
                                                                                 tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="adapters")
    for name in ("sql", "legal"):
        config = write_config(tmp_path / name) / "adapter_config.json"
        s3.put_object(Bucket="adapters", Key=f"team/{name}/adapter_config.json", Body=config.read_bytes())
    s3.put_object(Bucket="adapters", Key="team/weights-only/adapter_model.safetensors", Body=b"\x00")
    plane = ControlPlane(home=tmp_path / "home", env_extra={
        "AWS_ENDPOINT_URL": moto_reset, "AWS_ACCESS_KEY_ID": "adapter-test", "AWS_SECRET_ACCESS_KEY": SECRET}).start()
    try:
        key = plane.create_key("team")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={
            **SIM_SPEC, "name": "chat", "adapters": [{"name": "legal", "source": "s3://adapters/team/legal"}]})
        assert created.status_code == 201, created.text
        wait_running(rest, created.json()["id"])  # its replica started with the adapter fetched from S3

        added = rest.post("/v1/deployments/chat/adapters", json={"name": "sql", "source": "s3://adapters/team/sql/"})
        assert added.status_code == 201, added.text
        assert (added.json()["source"], added.json()["loaded_replicas"]) == ("s3://adapters/team/sql", 1)
        client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
        for model in ("chat:sql", "chat:legal"):
            answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=5, temperature=0)
            assert answer.model == model and answer.choices[0].message.content
        assert len(list((tmp_path / "home" / "adapters").iterdir())) == 2  # one cached directory each

        for source, reason in (("s3://adapters/team/missing", "nothing is stored under s3://adapters/team/missing"),
                               ("s3://adapters/team/weights-only", "holds no adapter_config.json"),
                               ("s3://no-such-bucket/sql", "bucket no-such-bucket does not exist")):
            refused = rest.post("/v1/deployments/chat/adapters", json={"name": "bad", "source": source})
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert error["code"] == "adapter_unavailable" and error["message"].startswith(f"Adapter bad cannot be "
                                                                                          f"read from {source}: ")
            assert reason in error["message"]
        assert [a["name"] for a in rest.get("/v1/deployments/chat").json()["spec"]["adapters"]] == ["legal", "sql"]
        new = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "other", "adapters": [
            {"name": "x", "source": "s3://adapters/team/missing"}]})
        assert new.status_code == 422 and "Adapter x cannot be read" in new.json()["error"]["message"]
        assert rest.get("/v1/deployments/other").status_code == 404
        assert SECRET not in plane.log_text()
    finally:
        plane.stop()
