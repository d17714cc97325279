"""The leader's sampling of every deployment for the console's charts (`history/`).

Every `interval_s` the loop hands over its fleet; each deployment becomes one `Sample` (rates and
latencies from the last observation the loop made of it, replica counts, bounds and cost), and the
tick's samples go to the store in one transaction, off the event loop, and to `/metrics` as gauges.
History is for looking at, not for deciding: a database that does not answer costs a gap in the
charts, never a tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from inferstack.controller.gauges import DeploymentGauges
from inferstack.controller.recorder import cost_usd, usd_per_hour
from inferstack.db import Database
from inferstack.fleet import LiveDeployment
from inferstack.history import table
from inferstack.history.series import Sample
from inferstack.spec import DeploymentStatus, ReplicaStatus

log = logging.getLogger("inferstack.controller")


def sample_of(deployment: LiveDeployment, now: float) -> Sample:
    window = deployment.traffic()
    stats = window.stats if window else None
    spec = deployment.spec
    return Sample(
        at=now,
        arrivals_rps=stats.rps if stats else 0.0,
        completions_rps=stats.completion_rps if stats else 0.0,
        p50_latency_ms=stats.p50_latency_ms if stats else None,
        p95_latency_ms=stats.p95_latency_ms if stats else None,
        p95_ttft_ms=stats.p95_ttft_ms if stats else None,
        ready=deployment.count(ReplicaStatus.ready), starting=deployment.count(ReplicaStatus.starting),
        draining=deployment.count(ReplicaStatus.draining),
        min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
        target_latency_ms=spec.target_latency_p95_ms,
        cost_usd=cost_usd(deployment), usd_per_hour=usd_per_hour(deployment))


class HistorySampler:
    def __init__(self, database: Database, interval_s: float) -> None:
        self._database = database
        self._interval_s = interval_s
        self._last_at: float | None = None
        self._gauges = DeploymentGauges()

    async def sample(self, deployments: Sequence[LiveDeployment], now: float) -> None:
        """Record every deployment if a sample is due (the first call always records)."""
        if self._last_at is not None and now - self._last_at < self._interval_s:
            return
        self._last_at = now
        samples = [(d.id, sample_of(d, now)) for d in deployments if d.status is not DeploymentStatus.deleted]
        self._gauges.show(samples)
        try:
            await asyncio.to_thread(table.record, self._database, samples, now)
        except Exception:  # a gap in the charts, not a failed tick (see the module's docstring)
            log.warning("history not recorded at %.0f", now, exc_info=True)
