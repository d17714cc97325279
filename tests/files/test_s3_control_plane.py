"""A control plane whose files live in S3 (the local emulator): upload, batch and download unchanged."""

from __future__ import annotations

from pathlib import Path

import boto3
import openai
import orjson

from support import ControlPlane, sim_deployment, wait_for


def test_files_and_batch_results_live_in_the_bucket(tmp_path: Path, s3_env: dict[str, str]) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env["INFERSTACK_S3_ENDPOINT_URL"])
    s3.create_bucket(Bucket="inferstack-files")
    plane = ControlPlane(home=tmp_path / "home", env_extra={
        **s3_env, "INFERSTACK_FILES_URL": "s3://inferstack-files/prod", "INFERSTACK_CONTROLLER_TICK_S": "0.2"})
    plane.start()
    try:
        key = plane.create_key("s3-team")
        sim_deployment(plane, key, "s3bot")
        client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key)
        path = tmp_path / "in.jsonl"
        path.write_bytes(b"".join(orjson.dumps({
            "custom_id": f"s3-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "s3bot", "max_tokens": 2, "messages": [{"role": "user", "content": str(i)}]},
        }) + b"\n" for i in range(20)))
        with path.open("rb") as file:
            uploaded = client.files.create(file=file, purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                        timeout=60, interval=0.1, what="the batch to complete")
        assert done.output_file_id is not None
        output = client.files.content(done.output_file_id).content.splitlines()
        assert sorted(orjson.loads(line)["custom_id"] for line in output) == sorted(f"s3-{i}" for i in range(20))

        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="inferstack-files")["Contents"]}
        assert f"prod/files/{uploaded.id}" in keys and f"prod/batches/{batch.id}/output.jsonl" in keys
        assert not (tmp_path / "home" / "files").exists()  # nothing fell back to the local directory
        client.files.delete(uploaded.id)
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="inferstack-files")["Contents"]}
        assert f"prod/files/{uploaded.id}" not in keys
    finally:
        plane.stop()
