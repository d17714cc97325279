"""Per-adapter accounting: each LoRA adapter's requests, tokens and latency, in `/metrics` and `status`.

An adapter's requests also count as its base deployment's (its arrivals scale the base's replicas);
these series tell them apart. Tokens come from the engine's own `usage`: the answer of a non-streamed
request, the last event of a stream that asked for it (`stream_options.include_usage`).
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import Counter, Histogram

from inferstack.fleet import AdapterStats, LiveDeployment

REQUESTS = Counter("inferstack_adapter_requests_total", "Requests to a LoRA adapter",
                   ["deployment", "adapter", "code"])
TOKENS = Counter("inferstack_adapter_tokens_total", "Tokens of a LoRA adapter's requests, from the engine's usage",
                 ["deployment", "adapter", "kind"])
LATENCY = Histogram("inferstack_adapter_request_seconds", "End-to-end latency of a LoRA adapter's requests",
                    ["deployment", "adapter"])


def record(deployment: LiveDeployment, adapter: str, status: int, seconds: float, usage: dict[str, Any]) -> None:
    stats = deployment.adapter_stats.setdefault(adapter, AdapterStats())
    stats.requests += 1
    stats.failed += status >= 400
    stats.seconds += seconds
    REQUESTS.labels(deployment.id, adapter, str(status)).inc()
    LATENCY.labels(deployment.id, adapter).observe(seconds)
    for kind in ("prompt_tokens", "completion_tokens"):
        count = usage.get(kind)
        if isinstance(count, int) and count > 0:
            setattr(stats, kind, getattr(stats, kind) + count)
            TOKENS.labels(deployment.id, adapter, kind.removesuffix("_tokens")).inc(count)


def usage_of_answer(answer: bytes) -> dict[str, Any]:
    """The `usage` object of a whole JSON answer; empty when it has none."""
    try:
        usage = orjson.loads(answer).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return usage if isinstance(usage, dict) else {}


def usage_of_stream(tail: bytes) -> dict[str, Any]:
    """The `usage` of the last server-sent event in `tail` that has one (the stream's end)."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            return usage_of_answer(line.removeprefix(b"data: "))
    return {}
