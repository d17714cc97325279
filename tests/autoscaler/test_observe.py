"""`observe`: what the autoscaler sees of a deployment, from plain data."""

from __future__ import annotations

from inferstack.autoscaler.observe import observe
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus


def deployment(awake_since: float) -> LiveDeployment:
    spec = DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="gpu.l4", max_replicas=4)
    return LiveDeployment(id="dep-1", tenant_id="t", name="d", spec=spec, status=DeploymentStatus.running,
                          status_reason="", created_at=0.0, awake_since=awake_since)


def add(live: LiveDeployment, rid: str, status: ReplicaStatus, outdated: bool = False) -> None:
    live.replicas[rid] = LiveReplica(handle=ReplicaHandle(rid, "http://x", None, ""), api_key="k", status=status,
                                     started_at=0.0, outdated=outdated)


def test_counts_replicas_of_the_current_shape_and_those_on_their_way() -> None:
    live = deployment(awake_since=0.0)
    add(live, "a", ReplicaStatus.ready)
    add(live, "b", ReplicaStatus.starting)
    add(live, "c", ReplicaStatus.draining)
    add(live, "d", ReplicaStatus.ready, outdated=True)  # its replacement is wanted instead
    live.pending_starts, live.queued = 1, 3
    obs = observe(live, now=100.0)
    assert (obs.current_replicas, obs.ready_replicas, obs.queued_requests) == (3, 2, 3)
    assert obs.price_per_replica_hour == live.spec.price_per_replica_hour


def test_the_idle_clock_starts_at_wake_up_when_no_request_came_since() -> None:
    live = deployment(awake_since=500.0)
    live.metrics.arrival(200.0)
    assert observe(live, now=600.0).stats.last_activity_at == 500.0
    live.metrics.arrival(550.0)
    assert observe(live, now=600.0).stats.last_activity_at == 550.0


def test_the_same_deployment_at_the_same_time_is_observed_the_same() -> None:
    live = deployment(awake_since=0.0)
    for t in (10.0, 20.0, 30.0):
        live.metrics.arrival(t)
    assert observe(live, now=40.0) == observe(live, now=40.0)


def test_it_sees_the_engines_capacity_their_queues_and_the_last_measured_start_up() -> None:
    live = deployment(awake_since=0.0)
    add(live, "a", ReplicaStatus.ready)
    add(live, "b", ReplicaStatus.ready)
    add(live, "c", ReplicaStatus.starting)
    live.replicas["a"].started_at, live.replicas["a"].ready_at, live.replicas["a"].engine_waiting = 10.0, 80.0, 2
    live.replicas["b"].started_at, live.replicas["b"].ready_at, live.replicas["b"].engine_waiting = 200.0, 245.0, 3
    live.queued, live.queued_for_slot = 5, 4
    obs = observe(live, now=300.0)
    assert obs.capacity_per_replica == 16  # the sim engine's default --max-concurrency
    assert (obs.engine_waiting, obs.queued_for_slot) == (5, 4)
    assert obs.startup_s == 45.0  # b is the most recent to turn ready
    assert observe(deployment(awake_since=0.0), now=1.0).startup_s is None
