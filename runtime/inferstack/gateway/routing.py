"""Which ready replica serves a request: the least outstanding of two random choices. A pure choice.

It knows nothing about waiting, queueing or batch slots: admission (`gateway/admission.py`) hands it
the replicas that may take the request now, and holds the request when there are none.
"""

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
