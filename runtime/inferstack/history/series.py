"""Downsampling a deployment's history, pure: no clock, no I/O.

Every sample the leader takes (one per deployment every `INFERSTACK_HISTORY_INTERVAL_S`) is folded into
one bucket of each tier: 10-second buckets kept 2 hours, 1-minute buckets kept 2 days, 10-minute
buckets kept 8 days. A deployment thus holds at most 720 + 2,880 + 1,152 = 4,752 points whatever its
age, and a chart of any window from 15 minutes to 7 days reads one tier with at most 1,440 points.

Within a bucket, rates and the hourly price are averaged over its samples; latencies and replica counts
keep the bucket's highest (a coarse chart must still show a spike or a scale-up that lasted one sample);
the replica bounds, the latency target and the cost so far keep the last sample's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 24 * HOUR_S
MIN_WINDOW_S = 15 * MINUTE_S
MAX_WINDOW_S = 7 * DAY_S
MAX_POINTS = 1440
"""A window is read from the finest tier that covers it in at most this many points."""


@dataclass(frozen=True)
class Tier:
    resolution_s: int
    keep_s: int


TIERS: tuple[Tier, ...] = (Tier(10, 2 * HOUR_S), Tier(MINUTE_S, 2 * DAY_S), Tier(10 * MINUTE_S, 8 * DAY_S))


@dataclass(frozen=True)
class Sample:
    """What a deployment looked like at `at` (rates and latencies over its metrics window)."""

    at: float
    arrivals_rps: float = 0.0
    completions_rps: float = 0.0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p95_ttft_ms: float | None = None
    ready: int = 0
    starting: int = 0
    draining: int = 0
    min_replicas: int = 0
    max_replicas: int = 0
    target_latency_ms: float | None = None
    cost_usd: float = 0.0
    """Cost so far, since the deployment was created."""
    usd_per_hour: float = 0.0
    """What the live replicas cost per hour at `at`."""


@dataclass(frozen=True)
class Point(Sample):
    """One bucket: `at` is where it starts, `samples` how many samples it holds."""

    samples: int = 1


_MEAN = ("arrivals_rps", "completions_rps", "usd_per_hour")
_HIGHEST = ("p50_latency_ms", "p95_latency_ms", "p95_ttft_ms", "ready", "starting", "draining")
_LAST = ("min_replicas", "max_replicas", "target_latency_ms", "cost_usd")
SERIES: tuple[str, ...] = _MEAN + _HIGHEST + _LAST
"""Every charted value, in one order (the table's columns and the API's fields)."""


def bucket_start(at: float, resolution_s: int) -> float:
    """12:00:07 in 10-second buckets starts at 12:00:00."""
    return math.floor(at / resolution_s) * resolution_s


def fold(bucket: Point | None, sample: Sample, resolution_s: int) -> Point:
    """`bucket` (None: the first sample of its bucket) with `sample` added. A sample of a later bucket
    starts a new one: the caller looks the bucket up by `bucket_start(sample.at, resolution_s)`.

    >>> first = fold(None, Sample(at=103, arrivals_rps=4, ready=1), 10)
    >>> second = fold(first, Sample(at=108, arrivals_rps=2, ready=3), 10)
    >>> (second.at, second.arrivals_rps, second.ready, second.samples)
    (100, 3.0, 3, 2)
    """
    values = {name: getattr(sample, name) for name in SERIES}
    start = bucket_start(sample.at, resolution_s)
    if bucket is None or bucket.at != start:
        return Point(at=start, samples=1, **values)
    n = bucket.samples
    for name in _MEAN:
        values[name] = (getattr(bucket, name) * n + values[name]) / (n + 1)
    for name in _HIGHEST:
        values[name] = _highest(getattr(bucket, name), values[name])
    return replace(bucket, samples=n + 1, **values)


def _highest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def oldest_kept(tier: Tier, now: float) -> float:
    """Buckets of `tier` that start before this are pruned."""
    return now - tier.keep_s


def tier_for(window_s: float) -> Tier:
    """The finest tier that still holds the whole window in at most MAX_POINTS points: 15 minutes and 1
    hour read 10-second buckets, 6 and 24 hours 1-minute ones, 7 days 10-minute ones."""
    for tier in TIERS:
        if tier.keep_s >= window_s and window_s / tier.resolution_s <= MAX_POINTS:
            return tier
    return TIERS[-1]


_WINDOW = re.compile(r"^(\d{1,6})([mhd])$")
_UNIT_S = {"m": MINUTE_S, "h": HOUR_S, "d": DAY_S}


class BadWindow(ValueError):
    pass


def parse_window(text: str) -> int:
    """'15m', '6h', '7d' -> seconds, between 15 minutes and 7 days; anything else raises BadWindow."""
    match = _WINDOW.match(text)
    if not match:
        raise BadWindow(f"window {text!r} is not a duration such as 15m, 6h or 7d")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise BadWindow(f"window {text!r} is outside 15m .. 7d")
    return seconds

