"""Which replicas go when a deployment shrinks: a pure choice."""

from __future__ import annotations

from collections.abc import Sequence

from inferstack.fleet import LiveReplica
from inferstack.spec import ReplicaStatus


def choose_victims(replicas: Sequence[LiveReplica], count: int) -> list[LiveReplica]:
    """The `count` replicas to remove: not-ready ones first (nobody waits on them), then the least loaded
    (fewest streams to drain), newest first among equals (the oldest have the warmest caches)."""
    removable = [r for r in replicas if r.status in (ReplicaStatus.starting, ReplicaStatus.ready)]
    ranked = sorted(
        removable,
        key=lambda r: (r.status is ReplicaStatus.ready, r.outstanding + r.batch_outstanding, -r.started_at),
    )
    return ranked[:count]
