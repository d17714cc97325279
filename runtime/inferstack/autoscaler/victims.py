"""Which replicas go when a deployment shrinks: a pure choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from inferstack.spec import ReplicaStatus


class Removable(Protocol):
    """What the choice reads of a replica (the live fleet's `LiveReplica` is one)."""

    @property
    def status(self) -> ReplicaStatus: ...

    @property
    def outstanding(self) -> int: ...

    @property
    def batch_outstanding(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    @property
    def burst(self) -> bool:
        """Placed on a burst provider because the deployment's first was full."""
        ...


R = TypeVar("R", bound=Removable)


def choose_victims(replicas: Sequence[R], count: int) -> list[R]:
    """The `count` replicas to remove: not-ready ones first (nobody waits on them), then burst ones (the
    dearer cloud capacity a full pool spilled onto), then the least loaded (fewest streams to drain),
    newest first among equals (the oldest have the warmest caches)."""
    removable = [r for r in replicas if r.status in (ReplicaStatus.starting, ReplicaStatus.ready)]
    ranked = sorted(
        removable,
        key=lambda r: (r.status is ReplicaStatus.ready, not r.burst, r.outstanding + r.batch_outstanding,
                       -r.started_at),
    )
    return ranked[:count]
