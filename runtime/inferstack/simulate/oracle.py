"""The oracle: replica-seconds of a scaler that knows the future.

For each 10-s bucket it needs ceil(arrival rate / target_rps) replicas (0 when no request arrives): 37
arrivals in a bucket at target 2 rps -> ceil(3.7 / 2) = 2. It starts each replica one start-up time
ahead (and pays for that start-up) and holds none it does not need: the k-th replica is kept through a
gap only when the gap is shorter than a start-up, which is then the cheaper of the two (a 30-s gap
with a 70-s start-up costs 30 s kept, 70 s restarted).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

BUCKET_S = 10.0


def needed_per_bucket(arrivals_s: Sequence[float], target_rps: float) -> list[int]:
    if not arrivals_s:
        return []
    counts = Counter(int(t // BUCKET_S) for t in arrivals_s)
    return [math.ceil(round(counts.get(b, 0) / BUCKET_S / target_rps, 9)) for b in range(max(counts) + 1)]


def oracle_replica_seconds(arrivals_s: Sequence[float], target_rps: float, startup_s: float) -> float:
    needed = needed_per_bucket(arrivals_s, target_rps)
    if not needed:
        return 0.0
    return sum(_level_seconds([n >= level for n in needed], startup_s) for level in range(1, max(needed) + 1))


def _level_seconds(busy: list[bool], startup_s: float) -> float:
    """One replica's cheapest cost: every busy bucket, one start-up, and each gap bridged or restarted."""
    total, gap, started = 0.0, 0.0, False
    for is_busy in busy:
        if not is_busy:
            gap += BUCKET_S
            continue
        total += BUCKET_S + (min(gap, startup_s) if started else startup_s)
        gap, started = 0.0, True
    return total
