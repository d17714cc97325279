"""`inferstack calibrate`: a `ReplicaProfile` fitted to what a real replica measured. Pure: the CLI does
the measuring (streams through the official openai client) and hands the numbers here.

At concurrency 1 the time to first token is the fixed prefill (`ttft_s`) and the time per output token
the decode step (`decode_s_per_token`); how much slower a step gets per extra sequence comes from the
highest concurrency measured: 20 ms per token alone, 26 ms at 16 -> (26 / 20 - 1) / 15 = 0.02.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferstack.autoscaler.metrics_window import nearest_rank
from inferstack.simulate.replica_model import ReplicaProfile


@dataclass(frozen=True)
class Measurement:
    concurrency: int
    ttft_s: float
    per_token_s: float  # (end - first token) / (tokens - 1)


def fit_profile(measurements: Sequence[Measurement], startup_s: float) -> ReplicaProfile:
    if not measurements:
        raise ValueError("no measurements to fit")
    by_level: dict[int, list[Measurement]] = {}
    for m in measurements:
        by_level.setdefault(m.concurrency, []).append(m)
    low, high = min(by_level), max(by_level)

    def median(level: int, attr: str) -> float:
        return nearest_rank(sorted(getattr(m, attr) for m in by_level[level]), 50) or 0.0

    step_alone, step_busy = median(low, "per_token_s"), median(high, "per_token_s")
    slowdown = 0.0
    if high > low and step_alone > 0:
        slowdown = max(0.0, (step_busy / step_alone - 1) / (high - low))
    return ReplicaProfile(startup_s=startup_s, ttft_s=median(low, "ttft_s"), prefill_s_per_token=0.0,
                          decode_s_per_token=step_alone, decode_slowdown_per_seq=round(slowdown, 6))
