"""Which replica serves a request: a pure choice."""

from __future__ import annotations

import random
from collections.abc import Sequence

from inferstack.fleet import LiveReplica


def choose_replica(
    ready: Sequence[LiveReplica], rng: random.Random, exclude: str | None = None
) -> LiveReplica | None:
    """Least outstanding requests among two random ready replicas ("power of two choices").

    Two samples keep the worst queue close to the best (Mitzenmacher) without scanning every replica,
    and avoid the herd that "always the least loaded" causes when many requests arrive at once.
    """
    candidates = [r for r in ready if r.replica_id != exclude] if exclude else ready
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    a, b = rng.sample(candidates, 2)
    return a if a.outstanding <= b.outstanding else b

