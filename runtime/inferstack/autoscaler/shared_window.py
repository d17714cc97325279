"""One deployment's traffic as every control-plane instance saw it, added up for the autoscaler.

Each instance's gateway feeds its own `MetricsWindow`. Every tick each follower publishes a
`WindowShare` of it (`controller/window_exchange.py`); the leader adds the fresh ones to its own with
`merge`. Rates, counts and requests in flight add up; latency percentiles cannot be added, so a
share carries its successful requests' latencies and times to first token as counts per bucket of a
fixed geometric scale (`BUCKET_BOUNDS_MS`, each bound 1.25x the last, so a merged percentile is the
upper bound of its bucket: at most 25% above the exact value). Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from inferstack.autoscaler.metrics_window import WindowStats

# 1 ms .. ~20 minutes in 64 buckets; a latency above the last bound counts in the last bucket.
BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(round(1.25 ** i, 3) for i in range(64))


@dataclass(frozen=True)
class WindowShare:
    """One instance's window of one deployment at one moment: its stats and latency histograms."""

    stats: WindowStats
    latency_counts: tuple[int, ...]
    ttft_counts: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stats": asdict(self.stats), "latency": list(self.latency_counts), "ttft": list(self.ttft_counts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowShare:
        return cls(WindowStats(**data["stats"]), tuple(data["latency"]), tuple(data["ttft"]))


@dataclass(frozen=True)
class MergedWindow:
    """What the leader's autoscaler saw of one deployment at `at`: every instance's window added up,
    from `instances_reporting` instances (the leader's own included). The leader publishes it, so
    `status` shows the same numbers on every instance."""

    stats: WindowStats
    instances_reporting: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"stats": asdict(self.stats), "instances_reporting": self.instances_reporting, "at": self.at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MergedWindow:
        return cls(WindowStats(**data["stats"]), data["instances_reporting"], data["at"])


def histogram(values_ms: Sequence[float]) -> tuple[int, ...]:
    """Counts per bucket: 0.9 ms and 1.0 ms go in the first (<= 1 ms), 1.1 ms in the second (<= 1.25)."""
    counts = [0] * len(BUCKET_BOUNDS_MS)
    for value in values_ms:
        counts[min(bisect.bisect_left(BUCKET_BOUNDS_MS, value), len(counts) - 1)] += 1
    return tuple(counts)


def share(stats: WindowStats, latencies_ms: Sequence[float], ttfts_ms: Sequence[float]) -> WindowShare:
    return WindowShare(stats, histogram(latencies_ms), histogram(ttfts_ms))


def merge(own: WindowShare, others: Sequence[WindowShare]) -> WindowStats:
    """The sum of every instance's traffic. Alone, the instance's own stats exactly as they are."""
    if not others:
        return own.stats
    shares = [own, *others]
    latency = [sum(column) for column in zip(*(s.latency_counts for s in shares), strict=True)]
    ttft = [sum(column) for column in zip(*(s.ttft_counts for s in shares), strict=True)]
    activity = [s.stats.last_activity_at for s in shares if s.stats.last_activity_at is not None]
    return replace(
        own.stats,
        rps=sum(s.stats.rps for s in shares),
        panic_rps=sum(s.stats.panic_rps for s in shares),
        completion_rps=sum(s.stats.completion_rps for s in shares),
        panic_completion_rps=sum(s.stats.panic_completion_rps for s in shares),
        in_flight=sum(s.stats.in_flight for s in shares),
        completed=sum(s.stats.completed for s in shares),
        failed=sum(s.stats.failed for s in shares),
        p50_latency_ms=bucket_percentile(latency, 50),
        p95_latency_ms=bucket_percentile(latency, 95),
        p50_ttft_ms=bucket_percentile(ttft, 50),
        p95_ttft_ms=bucket_percentile(ttft, 95),
        last_activity_at=max(activity) if activity else None,
    )


def bucket_percentile(counts: Sequence[int], percentile: float) -> float | None:
    """Nearest rank over bucketed values: the upper bound of the bucket holding the rank-th value.
    Counts [0, 3, 1] (three values <= 1.25 ms, one <= 1.5625): p50 -> 1.25, p95 -> 1.5625."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, -(-percentile * total // 100))
    seen = 0
    for bound, count in zip(BUCKET_BOUNDS_MS, counts, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return BUCKET_BOUNDS_MS[-1]
