"""What the autoscaler sees of a deployment each tick: `observe(deployment, now) -> Observation`.

A pure function of plain data (the spec, the metrics window, replica counts, requests held by the
gateway): no clock, no I/O. It reads the deployment through `Observed`, the few things it needs, so
the autoscaler knows nothing of the live fleet. Other control-plane instances' windows, when there
are any, are added to the deployment's own (`shared_window.merge`). The window's read also forgets
samples older than its longest window, which changes nothing a later read at the same or a later
`now` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from inferstack.autoscaler.decision import Observation
from inferstack.autoscaler.metrics_window import MetricsWindow
from inferstack.autoscaler.shared_window import WindowShare, merge, share
from inferstack.engines.capacity import engine_capacity
from inferstack.spec import DeploymentSpec, ReplicaStatus


class ObservedReplica(Protocol):
    @property
    def status(self) -> ReplicaStatus: ...

    @property
    def started_at(self) -> float: ...

    @property
    def ready_at(self) -> float | None: ...

    @property
    def engine_waiting(self) -> int | None: ...


class Observed(Protocol):
    @property
    def spec(self) -> DeploymentSpec: ...

    @property
    def metrics(self) -> MetricsWindow: ...

    @property
    def awake_since(self) -> float:
        """When it was created or last woken."""
        ...

    @property
    def queued(self) -> int:
        """Requests the gateway holds until a replica is ready."""
        ...

    @property
    def queued_for_slot(self) -> int:
        """Of those, the ones held while replicas were ready but full."""
        ...

    @property
    def held_elsewhere_until(self) -> float:
        """Another control-plane instance holds a request for it until then."""
        ...

    @property
    def peer_windows(self) -> list[WindowShare]:
        """The fresh windows other control-plane instances published for it (none on one instance)."""
        ...

    def wanted(self) -> int:
        """Replicas of the current shape that exist or are on their way."""
        ...

    def count(self, *statuses: ReplicaStatus) -> int: ...

    @property
    def replicas(self) -> Mapping[str, ObservedReplica]: ...


def observe(deployment: Observed, now: float) -> Observation:
    spec = deployment.spec
    own, latencies_ms, ttfts_ms = deployment.metrics.observe_with_samples(now, spec.metrics_window_s,
                                                                          spec.panic_window_s)
    stats = merge(share(own, latencies_ms, ttfts_ms), deployment.peer_windows) if deployment.peer_windows else own
    # The idle clock starts at creation or wake-up, so a fresh deployment is not paused at once.
    last = max(stats.last_activity_at or 0.0, deployment.awake_since)
    ready = [r for r in deployment.replicas.values() if r.status is ReplicaStatus.ready]
    return Observation(
        stats=replace(stats, last_activity_at=last),
        current_replicas=deployment.wanted(),
        ready_replicas=deployment.count(ReplicaStatus.ready),
        # A request held on another instance counts as one queued here until its wait runs out.
        queued_requests=deployment.queued + (1 if now < deployment.held_elsewhere_until else 0),
        price_per_replica_hour=spec.price_per_replica_hour,
        capacity_per_replica=engine_capacity(spec),
        queued_for_slot=deployment.queued_for_slot,
        engine_waiting=sum(r.engine_waiting or 0 for r in ready),
        startup_s=_last_startup_s(deployment.replicas.values()),
    )


def _last_startup_s(replicas: Iterable[ObservedReplica]) -> float | None:
    """How long the most recently ready replica took from asked-for to ready; None if none was ready yet."""
    started = [(r.ready_at, r.ready_at - r.started_at) for r in replicas if r.ready_at is not None]
    return max(started)[1] if started else None
