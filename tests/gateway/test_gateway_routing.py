"""Routing on its own: a pure choice among the replicas it is given."""

from __future__ import annotations

import random

from gateway_support import make_replica

from inferstack.gateway.routing import choose_replica


def test_the_only_candidate_is_chosen_without_drawing() -> None:
    only = make_replica("only", outstanding=99)
    rng = random.Random(1)
    state = rng.getstate()
    assert choose_replica([only], rng) is only
    assert rng.getstate() == state


def test_equal_replicas_are_drawn_at_random_by_the_given_rng() -> None:
    replicas = [make_replica(f"r{i}") for i in range(5)]
    first = [choose_replica(replicas, random.Random(seed)) for seed in range(20)]
    again = [choose_replica(replicas, random.Random(seed)) for seed in range(20)]
    assert [r.replica_id for r in first] == [r.replica_id for r in again]  # no hidden randomness
    assert len({r.replica_id for r in first}) > 1


def test_the_excluded_replica_is_never_chosen() -> None:
    replicas = [make_replica(f"r{i}") for i in range(3)]
    assert all(choose_replica(replicas, random.Random(s), exclude="r0").replica_id != "r0" for s in range(30))
