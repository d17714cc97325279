"""The autoscaler's decision: a pure function `decide(spec, observation, state, now) -> Decision`.

No I/O and no clock: `observe` (autoscaler/observe.py) builds an `Observation` (metrics window +
replica counts); the controller calls `decide`, applies `Decision.desired`, records
`Decision.reason`/`inputs` as an event and stores `Decision.next_state` (as JSON) for the next tick.
The same inputs always give the same decision, so the tests are tables that travel in time.

The rules, in the order they apply (each is one helper below, with a worked number):

  0. idle       no activity for idle_timeout_s, nothing in flight or queued -> 0 (pause); stops here.
  1. throughput ceil(rps / target_rps), at least 1 while anything is in flight; while no replica is ready,
                the rate adds none; above the replicas there, it adds only what they could not serve
                with every slot busy (the target's headroom absorbs the rest).
  2. queueing   requests waiting for a slot on full, ready replicas for a panic window (never time held
                while waking, never decode time) -> enough replicas to keep up with the arrivals at what
                a full replica serves, unless the backlog drains before a replica could start
                (autoscaler/backlog.py).
  3. panic      a burst of >= 2x capacity over the panic window -> ceil(panic_rps / target_rps), only
                while requests wait for a slot (a burst the replicas there absorb buys nothing); never
                at 0 replicas, where the wake sizes itself.
  4. wake       queued requests, or demand at 0 replicas -> at least max(min_replicas, 1), and while
                no replica is ready enough for the held requests.
     -> the recommendation, remembered for stabilisation.
  5. stabilising  scale-down only to the highest recommendation of the stabilisation window; once a
                start-up has been measured, the window is at most two start-ups (cost-aware: an idle
                replica kept longer costs more than starting one again).
  6. latency band scale-down only while p95 is known and below scale_down_below_latency_ms; and never
                below the replicas the running requests fill.
  7. panic      never shrink while in panic.
  8. cooldown   outside panic, no scale-up within scale_up_cooldown_s of the last one.
  9. clamp      min/max replicas and the price cap: the only place bounds are applied.

`Decision.rule` names the step that settled the number; "hold" when nothing changed and no rule had
to hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from inferstack.autoscaler import stabilisation
from inferstack.autoscaler.backlog import Backlog, full_rate, replicas_for
from inferstack.autoscaler.bounds import clamp
from inferstack.autoscaler.metrics_window import WindowStats
from inferstack.autoscaler.state import AutoscalerState
from inferstack.spec import ScalingSpec

PANIC_THRESHOLD = 2.0
"""Panic when the panic-window rate reaches this multiple of capacity (Knative's default: 200%)."""


@dataclass(frozen=True)
class Observation:
    """Plain data `observe` builds each tick.

    Contract on `stats.last_activity_at`: `observe` passes max(last real activity, the time the
    deployment was created or resumed), so a deployment that has not had its first request yet is
    not paused at once. `decide` trusts it as given; None means "never active" and reads as idle.
    """

    stats: WindowStats
    current_replicas: int  # replicas that exist now: starting + ready (draining ones excluded)
    ready_replicas: int
    queued_requests: int  # requests held by the gateway waiting for a replica (e.g. while waking)
    price_per_replica_hour: float
    capacity_per_replica: int = 0  # requests one replica runs at once (the engine's); 0 when unknown
    queued_for_slot: int = 0  # of queued_requests, those held while replicas were ready but full
    engine_waiting: int = 0  # the ready replicas' own queues at the last scrape
    startup_s: float | None = None  # the last replica's measured start-up; None before any was ready

    def backlog(self) -> Backlog:
        """Requests waiting for a slot: held at the gateway while replicas were ready but full (not those
        held for a wake), plus the engines' own queues."""
        waiting = self.queued_for_slot + self.engine_waiting
        served = max(self.stats.completion_rps, self.stats.panic_completion_rps)
        return Backlog(waiting, self.stats.rps, served, self.startup_s)


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str  # plain words with the numbers behind it
    rule: str  # throughput, queueing, latency, panic, stabilising, idle, wake, min, max, price_cap, cooldown, hold
    next_state: AutoscalerState
    inputs: dict[str, float | int | None]  # the numbers behind it, for the event record


@dataclass(frozen=True)
class _Proposal:
    """The number so far, the rule that set it, and the reasons collected on the way."""

    replicas: int
    rule: str
    reasons: tuple[str, ...]

    def override(self, replicas: int, rule: str, reason: str) -> _Proposal:
        return _Proposal(replicas, rule, (*self.reasons, reason))

    def note(self, reason: str) -> _Proposal:
        return _Proposal(self.replicas, self.rule, (*self.reasons, reason))


def decide(spec: ScalingSpec, obs: Observation, state: AutoscalerState, now: float) -> Decision:
    """How many replicas the deployment should have now, why, and the state for the next tick."""
    current = obs.current_replicas
    if _is_idle(spec, obs, now):
        return _pause(spec, obs, state, now)
    panic_until = _panic_until(spec, obs, state, now)
    backlog_since = (state.backlog_since or now) if obs.backlog().waiting > 0 else None
    lasting = backlog_since is not None and now - backlog_since >= spec.panic_window_s
    proposal = _throughput(spec, obs)
    proposal = _queueing(spec, obs, proposal, lasting)
    if panic_until is not None:
        proposal = _panic(spec, obs, proposal, panic_until, now, lasting)
    proposal = _wake(spec, obs, proposal)
    recommended = proposal.replicas
    if state.skip_stabilisation_once:
        history: tuple[tuple[float, int], ...] = ((now, recommended),)
        proposal = proposal.note("stabilisation skipped once (immediate_scale_down)")
    else:
        window_s = stabilisation.window_s(spec, obs.startup_s)
        history = stabilisation.remember(state.recommendations, recommended, now, window_s, current)
        proposal = _stabilise(window_s, proposal, history, current)
    proposal = _running_kept(obs, _latency_band(spec, obs, proposal))
    if panic_until is not None:
        proposal = _no_shrink_in_panic(proposal, current, panic_until, now)
    else:
        proposal = _cooldown(spec, state, proposal, current, now)
    proposal = _bounded(spec, obs, proposal)
    desired = proposal.replicas
    next_state = AutoscalerState(
        recommendations=history,
        last_scale_up_at=now if desired > current else state.last_scale_up_at,
        panic_until=panic_until,
        backlog_since=backlog_since,
    )
    rule = "hold" if desired == current and proposal.rule == "throughput" else proposal.rule
    inputs = {**_inputs(obs), "recommended": recommended, "panic_until": panic_until}
    return Decision(desired, "; ".join(proposal.reasons), rule, next_state, inputs)


# --- 0. idle -----------------------------------------------------------------------------------
def _is_idle(spec: ScalingSpec, obs: Observation, now: float) -> bool:
    """Idle means no arrival or completion for idle_timeout_s AND nothing in flight or queued.

    idle_timeout_s 3600, last activity at t=1000: idle from t=4600 on, unless a stream that arrived at
    t=900 is still going (in_flight 1): a long stream completes nothing, yet the deployment is in use.
    """
    if obs.stats.in_flight > 0 or obs.queued_requests > 0:
        return False
    last = obs.stats.last_activity_at
    return last is None or now - last >= spec.idle_timeout_s


def _pause(spec: ScalingSpec, obs: Observation, state: AutoscalerState, now: float) -> Decision:
    """Scale to 0: the only way below min_replicas, and it skips stabilisation (idle_timeout_s is the
    delay the user asked for). The window history starts again from 0."""
    last = obs.stats.last_activity_at
    quiet = "no requests yet" if last is None else f"no requests for {now - last:.0f} s"
    reason = f"{quiet} (idle timeout {spec.idle_timeout_s:g} s) and none in flight or queued -> pause at 0"
    next_state = AutoscalerState(recommendations=((now, 0),), last_scale_up_at=state.last_scale_up_at)
    inputs = {**_inputs(obs), "recommended": 0, "panic_until": None}
    return Decision(0, reason, "idle", next_state, inputs)


# --- 1. throughput -----------------------------------------------------------------------------
def _throughput(spec: ScalingSpec, obs: Observation) -> _Proposal:
    """ceil(rps / target_rps): rps 23.4, target 10/replica -> 3 replicas. No requests -> 0 (the clamp
    lifts it to min_replicas). Anything in flight needs a replica: rps 0.0 but one stream -> 1."""
    rps = obs.stats.rps
    if rps == 0 and obs.stats.in_flight == 0:
        quiet = f"no requests in the last {spec.metrics_window_s:g} s -> 0 replicas"
        return _Proposal(0, "throughput", (quiet,))
    replicas = _ceil(rps / spec.target_rps)
    per_replica = (f"{rps:.1f} req/s against a target of {spec.target_rps:g} per replica -> {replicas} "
                   f"replica{'' if replicas == 1 else 's'}")
    proposal = _Proposal(replicas, "throughput", (per_replica,))
    if replicas == 0 and obs.stats.in_flight > 0:
        proposal = proposal.override(1, "throughput", f"{obs.stats.in_flight} in flight -> 1 replica")
    current = obs.current_replicas
    if proposal.replicas > current and obs.capacity_per_replica and not obs.ready_replicas:
        # Waking, from 0 too: the rate of the first seconds is noise; the held requests size the wake (rule 4).
        proposal = proposal.override(current, "throughput", f"no replica ready yet -> hold {current}")
    return _headroom(spec, obs, proposal)


def _headroom(spec: ScalingSpec, obs: Observation, proposal: _Proposal) -> _Proposal:
    """target_rps keeps slots spare; while p95 is inside the target, a rise above it buys a replica only
    once the replicas there could not serve it with every slot busy. 30 running complete 4.8/s: a 16-slot
    replica serves 2.56/s full, 3 serve 7.7/s; rps 7.6 over target 2.5 -> stay at 3 (rps 8.0 -> 4). A
    replica bought for a rise the spare slots carry arrives a start-up later and is then held a
    stabilisation window. The extrapolation assumes a request takes as long in a fuller batch, which an
    engine slowing with its batch breaks: p95 over (or without) the target leaves the target in charge.
    Queueing (rule 2) and panic (rule 3) still add at once, and the target still sets how far to shrink."""
    current, running = obs.current_replicas, max(0, obs.stats.in_flight - obs.queued_requests)
    per = full_rate(obs.stats.completion_rps, running, obs.capacity_per_replica)
    p95 = obs.stats.p95_latency_ms
    if proposal.replicas <= current or not obs.ready_replicas or per is None or p95 is None:
        return proposal
    enough = max(current, _ceil(obs.stats.rps / per))
    if enough >= proposal.replicas or p95 > spec.target_latency_p95_ms:
        return proposal
    return proposal.override(enough, "throughput", f"{current} replica(s) serve {current * per:.1f} req/s with "
                                                   f"every slot busy, p95 {p95:.0f} ms inside the target -> {enough}")


# --- 2. queueing at the replicas -----------------------------------------------------------------
def _queueing(spec: ScalingSpec, obs: Observation, proposal: _Proposal, lasting: bool) -> _Proposal:
    """Requests waiting for a slot -> enough replicas to keep up with the arrivals at what a full replica
    serves now, and at least one more than are ready: 24 waiting on 1 full replica serving 10/s, 20
    arriving/s -> 2, replicas still starting included (no shrink meanwhile). Never more than run everything
    in flight at once (40 on 16 slots -> 3), which is also the size before any completion was measured;
    sizing every backlog so bought replicas for requests served before they were ready.
    Unless the backlog drains first: 24 waiting, served 12/s, arriving 4/s -> gone in 3 s, before a replica
    starting now (70 s) could take any -> no change.
    A backlog counts once it has lasted a panic window (6 s): one tick's blip is not a trend.
    Latency alone never adds a replica: time held while waking and decode time are not queueing."""
    backlog = obs.backlog()
    if backlog.waiting <= 0:
        return proposal
    if not lasting:
        return proposal.note(f"{backlog.waiting} request(s) waiting for a slot, for less than "
                             f"{spec.panic_window_s:g} s")
    needed, basis = replicas_for(obs.stats.in_flight, obs.capacity_per_replica), f"{obs.stats.in_flight} in flight"
    keep_up = backlog.keeping_up(obs.ready_replicas)
    if keep_up is not None and keep_up < needed:
        needed, basis = keep_up, f"arriving {backlog.arriving_rps:.1f}/s, served {backlog.served_rps:.1f}/s"
    needed = max(needed, obs.ready_replicas + 1, obs.current_replicas)
    waiting = f"{backlog.waiting} request(s) waiting for a slot on {obs.ready_replicas} full replica(s)"
    if not backlog.outlasts_startup():
        return proposal.note(f"{waiting}, draining in {backlog.drain_s():.0f} s, before a replica could start "
                             f"({backlog.startup_s:.0f} s) -> none added")
    if needed <= proposal.replicas:
        return proposal
    starting = obs.current_replicas - obs.ready_replicas
    counted = f" ({starting} starting counted)" if starting else ""
    return proposal.override(needed, "queueing", f"{waiting}, {basis} -> {needed}{counted}")


# --- 3. panic ----------------------------------------------------------------------------------
def _panic_until(spec: ScalingSpec, obs: Observation, state: AutoscalerState, now: float) -> float | None:
    """When panic ends, or None outside panic.

    capacity = current x target_rps: 2 replicas x 10 = 20 rps; panic_rps 40 over the last 6 s is
    2x -> panic until now + metrics_window_s. Like Knative, panic lasts a stable window (60 s by
    default) past the last burst, so the stable-window rate has caught up before shrinking may start.
    Never at 0 replicas: there every arrival would be a burst of the short, noisy window; the wake
    sizes itself from the held requests instead.
    """
    capacity = obs.current_replicas * spec.target_rps
    panic_rps = obs.stats.panic_rps
    if capacity > 0 and panic_rps >= PANIC_THRESHOLD * capacity:
        return now + spec.metrics_window_s
    if state.panic_until is not None and now < state.panic_until:
        return state.panic_until
    return None


def _panic(spec: ScalingSpec, obs: Observation, proposal: _Proposal, panic_until: float, now: float,
           lasting: bool) -> _Proposal:
    """In panic, follow the short window: panic_rps 40, target 10/replica -> 4 replicas, while requests wait
    for a slot and longer than a start-up; a burst the replicas there absorb, or one that will be over
    before a new replica is ready, buys none (panic still holds off any shrink)."""
    panic_rps = obs.stats.panic_rps
    replicas = _ceil(panic_rps / spec.target_rps)
    if replicas > proposal.replicas and not (lasting and obs.backlog().outlasts_startup()):
        return proposal.note(f"in panic for {panic_until - now:.0f} s more, no backlog a new replica could fix")
    if replicas <= proposal.replicas:
        return proposal.note(f"in panic for {panic_until - now:.0f} s more")
    return proposal.override(
        replicas, "panic",
        f"panic: {panic_rps:.1f} req/s in the last {spec.panic_window_s:g} s, capacity "
        f"{obs.current_replicas * spec.target_rps:g} rps -> {replicas} replicas (panic for {panic_until - now:.0f} s)",
    )


# --- 4. wake -----------------------------------------------------------------------------------
def _wake(spec: ScalingSpec, obs: Observation, proposal: _Proposal) -> _Proposal:
    """Requests waiting, or demand at 0 replicas -> at least max(min_replicas, 1), and at 0 replicas
    enough for the held requests.

    3 requests queued at 0 replicas, min_replicas 0 -> 1; min_replicas 2 -> 2 (waking restores the
    awake floor); 40 queued while no replica is ready yet, 16 slots each -> 3. The rule is "wake" whenever it brings a
    deployment up from 0.
    """
    current, stats = obs.current_replicas, obs.stats
    demand = obs.queued_requests > 0 or (current == 0 and (stats.rps > 0 or stats.in_flight > 0))
    if not demand:
        return proposal
    floor = max(spec.min_replicas, 1)
    if obs.ready_replicas == 0:
        floor = max(floor, replicas_for(obs.queued_requests, obs.capacity_per_replica))
    replicas = max(proposal.replicas, floor)
    if replicas == proposal.replicas and current > 0:
        return proposal
    why = f"{obs.queued_requests} request(s) queued" if obs.queued_requests else "requests arriving"
    verb = "wake to" if current == 0 else "at least"
    return proposal.override(replicas, "wake", f"{why} at {current} replicas -> {verb} {replicas}")


# --- 5. stabilisation --------------------------------------------------------------------------
def _stabilise(window_s: float, proposal: _Proposal, history: tuple[tuple[float, int], ...],
               current: int) -> _Proposal:
    """Scale-up is immediate; scale-down goes only to the highest recommendation in the window (HPA).

    Current 4, recommended 1, window 300 s holding a 3 from 120 s ago -> 3 (never above current).
    """
    if proposal.replicas >= current:
        return proposal
    highest = max(n for _, n in history)
    stabilised = min(current, highest)
    if stabilised <= proposal.replicas:
        return proposal
    return proposal.override(
        stabilised, "stabilising",
        f"highest recommendation in the last {window_s:.0f} s is {highest} -> {stabilised}",
    )


# --- 6. lower latency band ---------------------------------------------------------------------
def _latency_band(spec: ScalingSpec, obs: Observation, proposal: _Proposal) -> _Proposal:
    """With scale_down_below_latency_ms 1000, shrinking needs p95 known and under 1000 ms: p95 1400 ms
    (or no completions at all) holds at current."""
    band, current = spec.scale_down_below_latency_ms, obs.current_replicas
    if band is None or proposal.replicas >= current:
        return proposal
    p95 = obs.stats.p95_latency_ms
    if p95 is not None and p95 < band:
        return proposal
    seen = "p95 unknown" if p95 is None else f"p95 {p95:.0f} ms"
    return proposal.override(current, "latency", f"{seen}, not below {band:g} ms -> hold {current}")


def _running_kept(obs: Observation, proposal: _Proposal) -> _Proposal:
    """Never shrink below the replicas the running requests fill, whatever target_rps says: 40 running on
    16-slot replicas keep 3. A guard on the shrink of this tick, not a recommendation remembered: one tick's
    running count peaks with the jitter, and remembered it held a replica the rate did not need for a whole
    stabilisation window."""
    current, running = obs.current_replicas, max(0, obs.stats.in_flight - obs.queued_requests)
    busy = min(current, replicas_for(running, obs.capacity_per_replica))
    if busy <= proposal.replicas:
        return proposal
    return proposal.override(busy, "throughput", f"{running} running fill {busy} replicas of "
                                                 f"{obs.capacity_per_replica} slots")


# --- 7. no shrink in panic ---------------------------------------------------------------------
def _no_shrink_in_panic(proposal: _Proposal, current: int, panic_until: float, now: float) -> _Proposal:
    if proposal.replicas >= current:
        return proposal
    reason = f"in panic for {panic_until - now:.0f} s more: never shrink -> hold {current}"
    return proposal.override(current, "panic", reason)


# --- 8. scale-up cooldown ----------------------------------------------------------------------
def _cooldown(spec: ScalingSpec, state: AutoscalerState, proposal: _Proposal, current: int,
              now: float) -> _Proposal:
    """Cooldown 120 s, last scale-up 45 s ago: a scale-up 2 -> 3 holds at 2 for 75 s more.

    Never at 0 replicas: waking is not throttled (and arrivals at 0 are a panic anyway).
    """
    last = state.last_scale_up_at
    if proposal.replicas <= current or current == 0 or last is None:
        return proposal
    since = now - last
    if since >= spec.scale_up_cooldown_s:
        return proposal
    return proposal.override(
        current, "cooldown",
        f"would scale {current} -> {proposal.replicas}, but the last scale-up was {since:.0f} s ago "
        f"(cooldown {spec.scale_up_cooldown_s:g} s) -> hold {current}",
    )


# --- 9. bounds: the one place ------------------------------------------------------------------
def _bounded(spec: ScalingSpec, obs: Observation, proposal: _Proposal) -> _Proposal:
    desired, bound = clamp(proposal.replicas, spec, obs.price_per_replica_hour)
    if bound is None:
        return proposal
    if bound == "min" and proposal.replicas == 0 and obs.current_replicas == 0:
        # Nothing asked for and nothing running (a new or resumed deployment): the floor is the whole story.
        return _Proposal(desired, bound, (f"starting min_replicas ({spec.min_replicas})",))
    if bound == "min":
        limit = f"raised to min_replicas ({spec.min_replicas})"
    elif bound == "max":
        limit = f"capped at max_replicas ({spec.max_replicas})"
    else:
        limit = (f"capped by the price cap {spec.max_price_per_hour:g} USD/h at {obs.price_per_replica_hour:g} "
                 f"USD/h per replica -> {desired}")
    return proposal.override(desired, bound, limit)


# --- helpers -----------------------------------------------------------------------------------
def _ceil(value: float) -> int:
    # round(): 0.3 / 0.1 is 2.9999999999999996 and 2.0000000000000004 happens too; neither is a replica.
    return max(0, math.ceil(round(value, 9)))


def _inputs(obs: Observation) -> dict[str, float | int | None]:
    stats = obs.stats
    return {
        "rps": round(stats.rps, 3),
        "panic_rps": round(stats.panic_rps, 3),
        "p50_ms": stats.p50_latency_ms,
        "p95_ms": stats.p95_latency_ms,
        "p95_ttft_ms": stats.p95_ttft_ms,
        "in_flight": stats.in_flight,
        "completed": stats.completed,
        "failed": stats.failed,
        "last_activity_at": stats.last_activity_at,
        "current": obs.current_replicas,
        "ready": obs.ready_replicas,
        "queued": obs.queued_requests,
        "queued_for_slot": obs.queued_for_slot,
        "engine_waiting": obs.engine_waiting,
        "capacity_per_replica": obs.capacity_per_replica,
        "startup_s": obs.startup_s,
        "price_per_replica_hour": obs.price_per_replica_hour,
    }
