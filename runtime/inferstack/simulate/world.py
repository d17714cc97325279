"""The replay: one deployment in virtual time, driven event by event.

It runs production code wherever production decides something: the gateway's `HoldQueue` and
`pick_replica` (admission with the engine's per-replica capacity), the deployment's `MetricsWindow`,
`observe` and `decide` (or a baseline policy), and `choose_victims`, over the live fleet's own
`LiveDeployment`/`LiveReplica`. What is simulated is only what takes real time: a provider that makes a
replica ready `startup_s` after it is asked for, and the replicas themselves (`ReplicaModel`).
Like the controller, a tick comes every `tick_s` and at once when a held request needs a wake. Replica
time is counted from the first arrival to the last completion, for replicas starting, ready or draining.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inferstack.autoscaler.decision import Decision, decide
from inferstack.autoscaler.observe import observe
from inferstack.autoscaler.victims import choose_victims
from inferstack.engines.capacity import engine_capacity
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.gateway.admission import HoldQueue, pick_replica
from inferstack.providers.base import ReplicaHandle
from inferstack.simulate.oracle import needed_per_bucket
from inferstack.simulate.replica_model import ReplicaModel, ReplicaProfile
from inferstack.simulate.trace import TraceRequest
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus

WARM_START_S = 60.0
"""The deployment starts the replay with the replicas the trace's first this-many seconds need."""

Policy = Callable[[LiveDeployment, float], Decision]
"""What sets the replica count each tick: production's `observe` + `decide`, or a baseline."""


def production_policy(deployment: LiveDeployment, now: float) -> Decision:
    return decide(deployment.spec, observe(deployment, now), deployment.autoscaler_state, now)


@dataclass
class SimRequest:
    trace: TraceRequest
    replica_id: str | None = None
    first_token_at: float | None = None
    done_at: float | None = None
    for_slot: bool = False  # held while replicas were ready but full

    @property
    def latency_s(self) -> float:
        return (self.done_at or math.inf) - self.trace.arrival_s

    @property
    def ttft_s(self) -> float:
        return (self.first_token_at or math.inf) - self.trace.arrival_s


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    before: int
    after: int
    rule: str
    reason: str


@dataclass(frozen=True)
class Sample:
    """The deployment once per tick, for the timeline."""

    at: float
    live: int
    ready: int
    queued: int
    in_flight: int


@dataclass
class Replay:
    requests: list[SimRequest]
    replica_seconds: float = 0.0
    events: list[ScaleEvent] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    end_s: float = 0.0


class World:
    def __init__(self, spec: DeploymentSpec, profile: ReplicaProfile, policy: Policy = production_policy,
                 tick_s: float = 1.0, seed: int = 0, warm_start: bool = True) -> None:
        self.spec, self.profile, self.policy, self.tick_s = spec, profile, policy, tick_s
        self.warm_start = warm_start
        self.capacity = engine_capacity(spec)
        self.deployment = LiveDeployment(id="dep-sim", tenant_id="sim", name="sim", spec=spec,
                                         status=DeploymentStatus.running, status_reason="", created_at=0.0,
                                         awake_since=0.0)
        self.held: HoldQueue[SimRequest] = HoldQueue()
        self.models: dict[str, ReplicaModel[SimRequest]] = {}
        self._ready_at: dict[str, float] = {}
        self._rng = random.Random(seed)
        self._started = 0
        self.now = 0.0

    def run(self, trace: Sequence[TraceRequest]) -> Replay:
        """Replay `trace` on a deployment that was running before it: ready with min_replicas, or the
        replicas the trace's first minute needs if more (the oracle's count; a trace is a window cut from
        traffic that did not start at zero, and the oracle too starts its replicas ahead of it). Without
        `warm_start`, it starts with min_replicas only (0: the first request wakes it)."""
        window = [r.arrival_s for r in trace if r.arrival_s < WARM_START_S] if self.warm_start else []
        first = needed_per_bucket(window, self.spec.target_rps)
        self._grow(min(self.spec.max_replicas, max([self.spec.min_replicas, *first])), -self.profile.startup_s)
        self._turn_ready(0.0)
        requests = [SimRequest(t) for t in trace]
        replay = Replay(requests)
        pending, next_tick, i = len(requests), 0.0, 0
        while pending:
            t_arrival = requests[i].trace.arrival_s if i < len(requests) else math.inf
            t_ready = min(self._ready_at.values(), default=math.inf)
            t_model = min((m.next_event_at() for m in self.models.values()), default=math.inf)
            t = min(t_arrival, t_ready, t_model, next_tick)
            replay.replica_seconds += self._live() * (t - self.now)
            self.now = t
            if t == t_model:
                pending -= self._advance_models(t)
            elif t == t_ready:
                self._turn_ready(t)
            elif t == t_arrival:
                if self._arrive(requests[i], t):
                    next_tick = min(next_tick, t)  # the gateway nudges the controller: wake now
                i += 1
            else:
                self._tick(t, replay)
                next_tick = t + self.tick_s
        replay.end_s = self.now
        return replay

    # --- the provider ----------------------------------------------------------------------------
    def _live(self) -> int:
        return self.deployment.count(*ReplicaStatus.live())

    def _grow(self, count: int, now: float) -> None:
        for _ in range(count):
            self._started += 1
            rid = f"r{self._started}"
            handle = ReplicaHandle(replica_id=rid, url="", pid=None, log_path="")
            self.deployment.replicas[rid] = LiveReplica(handle, "", ReplicaStatus.starting, started_at=now)
            self._ready_at[rid] = now + self.profile.startup_s

    def _turn_ready(self, t: float) -> None:
        for rid in [rid for rid, at in self._ready_at.items() if at <= t]:
            del self._ready_at[rid]
            replica = self.deployment.replicas[rid]
            replica.status, replica.ready_at = ReplicaStatus.ready, t
            self.models[rid] = ReplicaModel(self.profile, self.capacity, now=t)
        self._serve_held(t)

    def _shrink(self, count: int) -> None:
        for victim in choose_victims(list(self.deployment.replicas.values()), count):
            if victim.status is ReplicaStatus.starting:
                self._stop(victim.replica_id)
            else:
                victim.status = ReplicaStatus.draining  # finishes what it has, takes nothing new
                if victim.outstanding == 0:
                    self._stop(victim.replica_id)

    def _stop(self, rid: str) -> None:
        self.deployment.replicas.pop(rid)
        self._ready_at.pop(rid, None)
        self.models.pop(rid, None)

    # --- the gateway -----------------------------------------------------------------------------
    def _arrive(self, request: SimRequest, t: float) -> bool:
        """Admit or hold one arrival; True when it is held with no replica ready (a wake is due)."""
        self.deployment.metrics.arrival(t)
        replica = None if len(self.held) else self._pick()
        if replica is not None:
            self._dispatch(request, replica, t)
            return False
        self.held.push(request)
        request.for_slot = bool(self.deployment.ready_replicas())
        self.deployment.queued += 1
        self.deployment.queued_for_slot += request.for_slot
        return not request.for_slot

    def _pick(self) -> LiveReplica | None:
        return pick_replica(self.deployment.ready_replicas(), self._rng, self.capacity, batch=False)

    def _dispatch(self, request: SimRequest, replica: LiveReplica, t: float) -> None:
        replica.outstanding += 1
        request.replica_id = replica.replica_id
        self.models[replica.replica_id].submit(request, request.trace.prompt_tokens, request.trace.output_tokens, t)

    def _serve_held(self, t: float) -> None:
        def give(request: SimRequest, replica: LiveReplica) -> None:
            self.deployment.queued -= 1
            self.deployment.queued_for_slot -= request.for_slot
            self._dispatch(request, replica, t)

        self.held.serve(lambda _: self._pick(), give)

    def _advance_models(self, t: float) -> int:
        finished = 0
        for rid, model in list(self.models.items()):
            if model.next_event_at() > t:
                continue
            first, done = model.advance(t)
            for request in first:
                request.first_token_at = t
            replica = self.deployment.replicas[rid]
            for request in done:
                request.done_at = t
                replica.outstanding -= 1
                self.deployment.metrics.completion(t, request.latency_s, request.ttft_s, True)
                finished += 1
            if replica.status is ReplicaStatus.draining and replica.outstanding == 0:
                self._stop(rid)
        if finished:
            self._serve_held(t)
        return finished

    # --- the controller --------------------------------------------------------------------------
    def _tick(self, t: float, replay: Replay) -> None:
        dep = self.deployment
        decision = self.policy(dep, t)
        dep.autoscaler_state = decision.next_state
        current = dep.wanted()
        if decision.desired != current:
            if current == 0:
                dep.awake_since = t
            replay.events.append(ScaleEvent(t, current, decision.desired, decision.rule, decision.reason))
            if decision.desired > current:
                self._grow(decision.desired - current, t)
            else:
                self._shrink(current - decision.desired)
        replay.samples.append(Sample(t, self._live(), dep.count(ReplicaStatus.ready), dep.queued,
                                     dep.metrics.in_flight))
