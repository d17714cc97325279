"""`inferstack tune`: the cheapest scaling fields that meet the SLO on a trace, searched in the simulator.

A small grid around what the trace itself suggests (`sizing`): target_rps at 0.6x to 1.4x the rate one
replica sustains, the stabilisation window and the metrics window. Each setting is one replay of the
production policy; the cheapest with at least `slo` of requests inside the target wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from inferstack.engines.capacity import engine_capacity
from inferstack.simulate.replica_model import ReplicaProfile
from inferstack.simulate.report import Summary, summarise
from inferstack.simulate.sizing import sustainable_rps
from inferstack.simulate.trace import TraceRequest
from inferstack.simulate.world import World
from inferstack.spec import DeploymentSpec

RPS_FACTORS = (0.6, 0.8, 1.0, 1.2, 1.4)
STABILISATION_WINDOWS = (60.0, 140.0, 300.0)
METRICS_WINDOWS = (30.0, 60.0)


@dataclass(frozen=True)
class Trial:
    fields: dict[str, float]
    summary: Summary


def tune(trace: Sequence[TraceRequest], spec: DeploymentSpec, profile: ReplicaProfile,
         slo: float = 0.99) -> tuple[Trial | None, list[Trial]]:
    """(the cheapest trial meeting `slo` or None, every trial in the order tried)."""
    base_rps = sustainable_rps(trace, profile, engine_capacity(spec))
    trials = []
    for factor, window, metrics in itertools.product(RPS_FACTORS, STABILISATION_WINDOWS, METRICS_WINDOWS):
        fields = {"target_rps": round(base_rps * factor, 2), "stabilisation_window": window,
                  "metrics_window_s": metrics}
        candidate = DeploymentSpec.model_validate({**spec.model_dump(), **fields})
        replay = World(candidate, profile).run(trace)
        trials.append(Trial(fields, summarise("tuned", replay, candidate, profile.startup_s)))
    meeting = [t for t in trials if t.summary.meets(slo)]
    return min(meeting, key=lambda t: t.summary.replica_hours, default=None), trials


def stack_snippet(name: str, spec: DeploymentSpec, fields: dict[str, float]) -> str:
    """The deployment's entry for a stack file's `inferstack:deployments`, with the tuned fields."""
    lines = ["  inferstack:deployments:", f"    - name: {name}", f"      hf_model_id: {spec.hf_model_id}",
             f"      hardware_profile: {spec.hardware_profile}", f"      min_replicas: {spec.min_replicas}",
             f"      max_replicas: {spec.max_replicas}",
             f"      target_latency_p95_ms: {spec.target_latency_p95_ms:g}"]
    lines += [f"      {key}: {value:g}" for key, value in fields.items()]
    return "\n".join(lines)
