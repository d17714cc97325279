"""Routing under load: two random choices keep every replica busy and prefer the less loaded."""

from __future__ import annotations

import random
from collections import Counter

from inferstack.fleet import LiveReplica
from inferstack.gateway.routing import choose_replica
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import ReplicaStatus


def replica(rid: str, status: ReplicaStatus = ReplicaStatus.ready, outstanding: int = 0,
            started_at: float = 0.0) -> LiveReplica:
    return LiveReplica(handle=ReplicaHandle(rid, f"http://{rid}", None, ""), api_key="k", status=status,
                       started_at=started_at, outstanding=outstanding)


def test_the_less_loaded_of_two_is_chosen() -> None:
    busy, idle = replica("busy", outstanding=9), replica("idle", outstanding=0)
    picks = Counter(choose_replica([busy, idle], random.Random(seed)).replica_id for seed in range(50))
    assert picks == {"idle": 50}


def test_load_spreads_over_equal_replicas() -> None:
    replicas = [replica(f"r{i}") for i in range(4)]
    rng = random.Random(7)
    picks = Counter()
    for _ in range(400):
        chosen = choose_replica(replicas, rng)
        assert chosen is not None
        chosen.outstanding += 1  # requests stay in flight: the spread must follow the load
        picks[chosen.replica_id] += 1
    # Every replica gets its share: a Counter has no key for a replica never picked, so name them all.
    assert sorted(picks) == [r.replica_id for r in replicas], picks
    assert max(picks.values()) - min(picks.values()) <= 2


def test_a_failed_replica_is_excluded_from_the_retry() -> None:
    a, b = replica("a"), replica("b", outstanding=50)
    assert all(choose_replica([a, b], random.Random(s), exclude="a") is b for s in range(10))
    assert choose_replica([a], random.Random(1), exclude="a") is None
    assert choose_replica([], random.Random(1)) is None
