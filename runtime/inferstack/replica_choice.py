"""Which replica serves a request, and which replicas go when the deployment shrinks. Pure functions."""

from __future__ import annotations

import random
from collections.abc import Sequence

from inferstack.fleet import LiveReplica
from inferstack.spec import ReplicaStatus


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


def choose_victims(replicas: Sequence[LiveReplica], count: int) -> list[LiveReplica]:
    """The `count` replicas to remove: not-ready ones first (nobody waits on them), then the least loaded
    (fewest streams to drain), newest first among equals (the oldest have the warmest caches)."""
    removable = [r for r in replicas if r.status in (ReplicaStatus.starting, ReplicaStatus.ready)]
    ranked = sorted(
        removable,
        key=lambda r: (r.status is ReplicaStatus.ready, r.outstanding + r.batch_outstanding, -r.started_at),
    )
    return ranked[:count]
