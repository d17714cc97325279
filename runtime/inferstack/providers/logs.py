"""What a replica wrote, as `inferstack logs` shows it: the last lines of its log, secrets redacted.

A replica's record names where its output is (`ReplicaRow.log_path`, from its provider's handle):
a file on the control plane's host (local replicas; Kubernetes replicas' placement notes), or
`cloudwatch:<group>:<stream>` for AWS replicas, whose boot script ships the instance's output to
CloudWatch (readable after the instance is gone). Every line passes `secret_scan.redact`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from inferstack.secret_scan import redact

CLOUDWATCH = "cloudwatch:"
MAX_TAIL = 10_000


class LogUnavailable(Exception):
    """The log cannot be read (gone, or its store refused); the message says why, never a secret."""


class CloudWatchLogs:
    """The boto3 read of one stream's last events (a CloudWatch-compatible endpoint in tests)."""

    def __init__(self, region: str | None, endpoint_url: str | None) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None

    def last_lines(self, group: str, stream: str, tail: int) -> list[str]:
        if self._client is None:
            self._client = boto3.client("logs", region_name=self._region, endpoint_url=self._endpoint_url)
        try:
            events = self._client.get_log_events(logGroupName=group, logStreamName=stream, limit=tail,
                                                 startFromHead=False)["events"]
        except (ClientError, BotoCoreError) as exc:
            raise LogUnavailable(f"CloudWatch {group}/{stream}: {exc}") from None
        return [line for event in events for line in event["message"].splitlines()][-tail:]


def _file_tail(path: Path, tail: int) -> list[str]:
    try:
        with path.open(errors="replace") as lines:
            return [line.rstrip("\n") for line in deque(lines, maxlen=tail)]
    except FileNotFoundError:
        # A local replica's file is on the host of the instance that started it: ask that one.
        raise LogUnavailable(f"the log file of this replica ({path.name}) is gone or on another "
                             "control-plane host") from None


async def read_log(log_path: str, tail: int, cloudwatch: CloudWatchLogs, known_secrets: list[str]) -> list[str]:
    """The last `tail` lines at `log_path`, redacted (the `known_secrets` verbatim too)."""
    if not log_path:
        raise LogUnavailable("this replica records no log")
    if log_path.startswith(CLOUDWATCH):
        group, _, stream = log_path.removeprefix(CLOUDWATCH).rpartition(":")
        lines = await asyncio.to_thread(cloudwatch.last_lines, group, stream, tail)
    else:
        lines = await asyncio.to_thread(_file_tail, Path(log_path), tail)
    return [redact(line, known_secrets) for line in lines]
