"""What one replica can promise on a trace's request mix, from the replica model alone (no replay).

`inferstack tune` and bench/autoscaler.py start from these: the latency target a replica can meet at all
(the trace's slow requests take their decode time however many replicas there are) and the request rate
one replica sustains at that target (`target_rps`, what the throughput rule and the oracle divide by).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from inferstack.autoscaler.metrics_window import nearest_rank
from inferstack.engines.capacity import engine_capacity
from inferstack.simulate.replica_model import ReplicaProfile
from inferstack.simulate.trace import TraceRequest
from inferstack.spec import DeploymentSpec

UTILISATION = 0.8
"""Share of a replica's slots the rate target plans to fill: the rest absorbs the Poisson jitter."""


def alone_s(profile: ReplicaProfile, request: TraceRequest, batch: int = 1) -> float:
    """A request's latency on a replica running `batch` sequences, with no wait for a slot."""
    return profile.prefill_s(request.prompt_tokens) + (request.output_tokens - 1) * profile.step_s(batch)


def feasible_target_ms(trace: Sequence[TraceRequest], profile: ReplicaProfile, capacity: int) -> float:
    """A p95 target the trace can meet: 1.5x its p99 request on a busy replica (80% of the slots), rounded
    up to a second, so a request may wait for a slot a third of its own time. Conv trace, 601 tokens at
    20 ms x 1.13 = 13.6 s -> 21 s."""
    batch = max(1, math.floor(capacity * UTILISATION))
    p99 = nearest_rank(sorted(alone_s(profile, r, batch) for r in trace), 99) or 0.0
    return math.ceil(1.5 * p99) * 1000.0


def sustainable_rps(trace: Sequence[TraceRequest], profile: ReplicaProfile, capacity: int) -> float:
    """Requests per second one replica serves with 80% of its slots busy (Little's law): 16 slots,
    requests of 4.7 s on average -> 0.8 x 16 / 4.7 = 2.7 rps, rounded down to a tenth."""
    batch = max(1, math.floor(capacity * UTILISATION))
    mean_s = sum(alone_s(profile, r, batch) for r in trace) / max(1, len(trace))
    return max(0.1, math.floor(batch / mean_s * 10) / 10)


def sized(spec: DeploymentSpec, trace: Sequence[TraceRequest], profile: ReplicaProfile,
          keep: Collection[str] = ()) -> DeploymentSpec:
    """`spec` with target_rps and target_latency_p95_ms from the trace and the profile, except the fields
    named in `keep` (the ones the user set)."""
    capacity = engine_capacity(spec)
    update = {"target_rps": sustainable_rps(trace, profile, capacity),
              "target_latency_p95_ms": feasible_target_ms(trace, profile, capacity)}
    return DeploymentSpec.model_validate({**spec.model_dump(), **{k: v for k, v in update.items() if k not in keep}})
