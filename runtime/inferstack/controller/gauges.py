"""What the history samples also show at `/metrics`, as gauges per deployment: the panels of
`docs/grafana-dashboard.json` that the gateway's request counter and latency histogram do not cover
(replicas, bounds, latency percentiles with time to first token, the target, cost).

Set by the leader when it samples (`controller/history.py`); a deployment that is gone loses its series.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import Gauge

from inferstack.history.series import Sample

REPLICAS = Gauge("inferstack_deployment_replicas", "Replicas by status (ready, starting, draining)",
                 ["deployment", "status"])
BOUNDS = Gauge("inferstack_deployment_replica_bound", "The deployment's min_replicas and max_replicas",
               ["deployment", "bound"])
LATENCY_MS = Gauge("inferstack_deployment_latency_ms",
                   "Latency percentiles over the metrics window (p50, p95, ttft_p95), and the p95 target",
                   ["deployment", "quantile"])
COST_USD = Gauge("inferstack_deployment_cost_usd", "Cost so far, since the deployment was created", ["deployment"])
USD_PER_HOUR = Gauge("inferstack_deployment_usd_per_hour", "What the live replicas cost per hour", ["deployment"])

_LABELS = {REPLICAS: ("ready", "starting", "draining"), BOUNDS: ("min", "max"),
           LATENCY_MS: ("p50", "p95", "ttft_p95", "target"), COST_USD: (), USD_PER_HOUR: ()}


class DeploymentGauges:
    def __init__(self) -> None:
        self._shown: set[str] = set()

    def show(self, samples: Sequence[tuple[str, Sample]]) -> None:
        for deployment_id, s in samples:
            for status, value in (("ready", s.ready), ("starting", s.starting), ("draining", s.draining)):
                REPLICAS.labels(deployment_id, status).set(value)
            BOUNDS.labels(deployment_id, "min").set(s.min_replicas)
            BOUNDS.labels(deployment_id, "max").set(s.max_replicas)
            for quantile, ms in (("p50", s.p50_latency_ms), ("p95", s.p95_latency_ms), ("ttft_p95", s.p95_ttft_ms),
                                 ("target", s.target_latency_ms)):
                LATENCY_MS.labels(deployment_id, quantile).set(float("nan") if ms is None else ms)
            COST_USD.labels(deployment_id).set(s.cost_usd)
            USD_PER_HOUR.labels(deployment_id).set(s.usd_per_hour)
        current = {deployment_id for deployment_id, _ in samples}
        for gone in self._shown - current:
            for gauge, labels in _LABELS.items():
                for label_values in [(gone, label) for label in labels] or [(gone,)]:
                    with contextlib.suppress(KeyError):  # never shown (a sample taken before it had one)
                        gauge.remove(*label_values)
        self._shown = current
