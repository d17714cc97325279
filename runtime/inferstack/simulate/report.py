"""What a replay comes to: SLO attainment, latency percentiles, replica-hours, cost, against the oracle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferstack.autoscaler.metrics_window import nearest_rank
from inferstack.simulate.oracle import oracle_replica_seconds
from inferstack.simulate.world import Replay
from inferstack.spec import DeploymentSpec


@dataclass(frozen=True)
class Summary:
    policy: str
    requests: int
    inside_target: float  # share of requests whose end-to-end latency is within target_latency_p95_ms
    p50_ms: float
    p95_ms: float
    p95_ttft_ms: float
    replica_hours: float
    cost_usd: float
    scale_events: int
    oracle_ratio: float  # replica-hours / the oracle's

    def meets(self, slo: float = 0.99) -> bool:
        return self.inside_target >= slo


def summarise(policy: str, replay: Replay, spec: DeploymentSpec, startup_s: float) -> Summary:
    latencies = sorted(r.latency_s * 1000 for r in replay.requests)
    ttfts = sorted(r.ttft_s * 1000 for r in replay.requests)
    inside = sum(1 for ms in latencies if ms <= spec.target_latency_p95_ms)
    oracle = oracle_replica_seconds([r.trace.arrival_s for r in replay.requests], spec.target_rps, startup_s)
    hours = replay.replica_seconds / 3600
    return Summary(
        policy=policy, requests=len(latencies), inside_target=inside / max(1, len(latencies)),
        p50_ms=nearest_rank(latencies, 50) or 0.0, p95_ms=nearest_rank(latencies, 95) or 0.0,
        p95_ttft_ms=nearest_rank(ttfts, 95) or 0.0, replica_hours=hours,
        cost_usd=hours * spec.price_per_replica_hour, scale_events=len(replay.events),
        oracle_ratio=replay.replica_seconds / oracle if oracle else 0.0,
    )


HEADER = ("policy", "inside target", "p50 ms", "p95 ms", "p95 TTFT ms", "replica-h", "cost USD", "scalings", "x oracle")


def table(rows: Sequence[Summary]) -> str:
    """A Markdown table, one row per policy."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for s in rows:
        cells = (s.policy, f"{s.inside_target:.2%}", f"{s.p50_ms:.0f}", f"{s.p95_ms:.0f}", f"{s.p95_ttft_ms:.0f}",
                 f"{s.replica_hours:.3f}", f"{s.cost_usd:.2f}", str(s.scale_events), f"{s.oracle_ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
