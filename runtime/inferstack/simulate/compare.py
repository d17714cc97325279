"""One trace, every policy: production's and the baselines, each in its own replay, as `Summary` rows."""

from __future__ import annotations

from collections.abc import Sequence

from inferstack.simulate.baselines import baselines
from inferstack.simulate.oracle import needed_per_bucket
from inferstack.simulate.replica_model import ReplicaProfile
from inferstack.simulate.report import Summary, summarise
from inferstack.simulate.trace import TraceRequest
from inferstack.simulate.world import World
from inferstack.spec import DeploymentSpec

PRODUCTION = "inferstack"


def compare(trace: Sequence[TraceRequest], spec: DeploymentSpec, profile: ReplicaProfile,
            with_baselines: bool = True) -> list[Summary]:
    rows = [summarise(PRODUCTION, World(spec, profile).run(trace), spec, profile.startup_s)]
    if with_baselines:
        peak = max(needed_per_bucket([r.arrival_s for r in trace], spec.target_rps), default=1)
        for name, make in baselines(min(peak, spec.max_replicas)).items():
            rows.append(summarise(name, World(spec, profile, policy=make()).run(trace), spec, profile.startup_s))
    return rows


def cheapest_meeting(rows: Sequence[Summary], slo: float = 0.99) -> Summary | None:
    meeting = [r for r in rows if r.meets(slo)]
    return min(meeting, key=lambda r: r.replica_hours, default=None)
