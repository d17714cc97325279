"""Seeded synthetic traces, for tests and for the bursts the recorded traces lack.

`phases` is a list of (seconds, requests per second): a Poisson process at each rate in turn, a rate of 0
a silence. Prompt and output lengths are log-normal around `prompt_tokens` and `output_tokens`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from inferstack.simulate.trace import TraceRequest

BURSTY: tuple[tuple[float, float], ...] = (
    (900, 2.0), (60, 20.0), (900, 2.0), (45, 30.0), (600, 3.0), (1500, 0.0), (120, 15.0), (1200, 4.0),
    (30, 40.0), (1245, 2.0),
)
"""1.8 hours: a steady base, spikes of 20-40 rps (30-60 s), a 25-minute silence and a cold burst after it."""


def poisson_trace(phases: Sequence[tuple[float, float]], seed: int = 0, prompt_tokens: int = 1000,
                  output_tokens: int = 60) -> list[TraceRequest]:
    rng = random.Random(seed)
    out, start = [], 0.0
    for duration, rate in phases:
        t = start
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= start + duration:
                break
            out.append(TraceRequest(t, _lognormal(rng, prompt_tokens), max(1, _lognormal(rng, output_tokens))))
        start += duration
    return out


def _lognormal(rng: random.Random, median: int, sigma: float = 0.6) -> int:
    return round(median * math.exp(rng.gauss(0.0, sigma)))
