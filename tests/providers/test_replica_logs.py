"""A replica's log as `inferstack logs` reads it: an AWS replica's CloudWatch stream (on the moto server)
and a local replica's file, the last lines, secrets redacted."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from inferstack.providers.aws_groups import replica_log_group, replica_log_stream
from inferstack.providers.logs import CloudWatchLogs, LogUnavailable, read_log

TOKEN = "hf_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4"


async def test_an_aws_replicas_stream_is_read_from_cloudwatch_tail_first_and_redacted(moto_reset: str) -> None:
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=moto_reset)
    group, instance = replica_log_group("prod"), "i-0123456789abcdef0"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=instance)
    lines = ["boot: checking docker", "boot: nvidia-smi not found", f"HF_TOKEN={TOKEN} docker run vllm",
             "boot: giving up, signalling the group"]
    now_ms = int(time.time() * 1000)  # CloudWatch takes events of the last two weeks only
    events = [{"timestamp": now_ms + n, "message": line} for n, line in enumerate(lines)]
    logs.put_log_events(logGroupName=group, logStreamName=instance, logEvents=events)
    reader = CloudWatchLogs("us-east-1", moto_reset)

    shown = await read_log(replica_log_stream("prod", instance), 3, reader, [])
    assert shown == ["boot: nvidia-smi not found", "HF_TOKEN=[redacted] docker run vllm",
                     "boot: giving up, signalling the group"]
    with pytest.raises(LogUnavailable, match="CloudWatch"):
        await read_log(replica_log_stream("prod", "i-gone"), 3, reader, [])


async def test_a_local_replicas_file_gives_its_last_lines_with_its_key_redacted(tmp_path: Path) -> None:
    log = tmp_path / "rep-1.log"
    log.write_text("".join(f"line {n}\n" for n in range(500)) + "serving with key s3cr3t-replica-key\n")
    shown = await read_log(str(log), 2, CloudWatchLogs(None, None), ["s3cr3t-replica-key"])
    assert shown == ["line 499", "serving with key [redacted]"]
    with pytest.raises(LogUnavailable, match="gone"):
        await read_log(str(tmp_path / "gone.log"), 2, CloudWatchLogs(None, None), [])
