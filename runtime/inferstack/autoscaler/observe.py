"""What the autoscaler sees of a deployment each tick: `observe(deployment, now) -> Observation`.

A pure function of plain data (the spec, the metrics window, replica counts, requests held by the
gateway): no clock, no I/O. It reads the deployment through `Observed`, the few things it needs, so
the autoscaler knows nothing of the live fleet. Other control-plane instances' windows, when there
are any, are added to the deployment's own (`shared_window.merge`). The window's read also forgets
samples older than its longest window, which changes nothing a later read at the same or a later
`now` returns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from inferstack.autoscaler.decision import Observation
from inferstack.autoscaler.metrics_window import MetricsWindow
from inferstack.autoscaler.shared_window import WindowShare, merge, share
from inferstack.spec import DeploymentSpec, ReplicaStatus


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


def observe(deployment: Observed, now: float) -> Observation:
    spec = deployment.spec
    own, latencies_ms, ttfts_ms = deployment.metrics.observe_with_samples(now, spec.metrics_window_s,
                                                                          spec.panic_window_s)
    stats = merge(share(own, latencies_ms, ttfts_ms), deployment.peer_windows) if deployment.peer_windows else own
    # The idle clock starts at creation or wake-up, so a fresh deployment is not paused at once.
    last = max(stats.last_activity_at or 0.0, deployment.awake_since)
    return Observation(
        stats=replace(stats, last_activity_at=last),
        current_replicas=deployment.wanted(),
        ready_replicas=deployment.count(ReplicaStatus.ready),
        # A request held on another instance counts as one queued here until its wait runs out.
        queued_requests=deployment.queued + (1 if now < deployment.held_elsewhere_until else 0),
        price_per_replica_hour=spec.price_per_replica_hour,
    )
