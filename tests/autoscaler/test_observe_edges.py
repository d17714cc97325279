"""`observe` at its edges: a request held on another instance, a queue never scraped, a clock at zero."""

from __future__ import annotations

from test_observe import add, deployment

from inferstack.autoscaler.observe import observe
from inferstack.spec import ReplicaStatus


def test_a_request_held_on_another_instance_counts_as_one_queued_until_its_wait_runs_out() -> None:
    live = deployment(awake_since=0.0)
    live.queued, live.held_elsewhere_until = 2, 130.0
    assert observe(live, now=100.0).queued_requests == 3
    assert observe(live, now=129.9).queued_requests == 3
    assert observe(live, now=130.0).queued_requests == 2  # its wait ran out: no longer counted


def test_a_ready_replica_whose_queue_was_never_scraped_adds_nothing_waiting() -> None:
    live = deployment(awake_since=0.0)
    add(live, "a", ReplicaStatus.ready)
    add(live, "b", ReplicaStatus.ready)
    live.replicas["b"].engine_waiting = 4
    assert live.replicas["a"].engine_waiting is None
    assert observe(live, now=10.0).engine_waiting == 4


def test_a_deployment_created_at_time_zero_without_requests_is_active_since_zero() -> None:
    assert observe(deployment(awake_since=0.0), now=5.0).stats.last_activity_at == 0.0
