"""The controller loop: every tick, for each managed deployment, observe -> decide -> apply -> record.

It only dispatches: observing is `autoscaler.observe`, deciding is `autoscaler.decide` (both pure),
replicas change through the `ReplicaLifecycle`, engine queues come from the `Probes`, and records go
through the `Recorder`. It runs every `tick_s` seconds, or at once when nudged (a held request wants
a wake-up, a replica became ready or went, the user changed something).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from inferstack.autoscaler.decision import Decision, decide
from inferstack.autoscaler.observe import observe
from inferstack.autoscaler.shared_window import MergedWindow
from inferstack.clock import Clock, wait_at_most
from inferstack.controller.adapters import AdapterSync
from inferstack.controller.backoff import retry_due
from inferstack.controller.history import HistorySampler
from inferstack.controller.probes import Probes, engine_queues
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.fleet import Fleet, LiveDeployment
from inferstack.spec import DeploymentStatus, ReplicaStatus
from inferstack.store import ReplicaRow

log = logging.getLogger("inferstack.controller")

# The autoscaler's memory and the cost so far reach the store at least this often (and on every scale),
# so a restart loses at most this much of either.
STATE_SAVE_INTERVAL_S = 15.0


class ControllerLoop:
    def __init__(self, fleet: Fleet, recorder: Recorder, probes: Probes, replicas: ReplicaLifecycle,
                 adapters: AdapterSync, clock: Clock, kick: asyncio.Event, *, tick_s: float = 1.0,
                 history: HistorySampler | None = None) -> None:
        """`kick` is set by whoever wants a pass before the next tick (see `wake`); `history`, when
        given, samples every deployment for the charts after the tick's passes."""
        self._fleet = fleet
        self._adapters = adapters
        self._recorder = recorder
        self._probes = probes
        self._replicas = replicas
        self._clock = clock
        self._kick = kick
        self._tick_s = tick_s
        self._history = history
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bring back every deployment from the store, then run the loop in the background. A deployment
        already in the fleet (mirrored while this instance followed) is taken over in place."""
        await self._probes.start()
        await self._adapters.start()
        now = self._clock.now()
        restored, live_replicas = await self._recorder.restore(now)
        for deployment in restored:
            existing = self._fleet.get(deployment.id)
            if existing is None:
                self._fleet.add(deployment)
            else:
                existing.take_over(deployment)
        for gone in {d.id for d in self._fleet.all()} - {d.id for d in restored}:
            self._fleet.remove(gone)
        rows_of: defaultdict[str, list[ReplicaRow]] = defaultdict(list)
        for row in live_replicas:
            rows_of[row.deployment_id].append(row)
        kept: set[str] = set()
        for deployment in self._fleet.all():
            if rows_of[deployment.id] and deployment.status in DeploymentStatus.managed():
                kept |= await self._replicas.adopt(deployment, rows_of[deployment.id])
        for deleted in await self._recorder.deleted_not_removed(now):
            await self._replicas.remove_left_behind(deleted, rows_of[deleted.id])
        await self._recorder.orphaned(now, kept)
        self._task = asyncio.create_task(self._run(), name="controller-loop")

    async def stop(self, *, hand_over: bool = False) -> None:
        """Stop the loop and every replica: a stopped control plane leaves nothing running. With
        `hand_over` another instance leads next: replicas that can outlive this process keep running
        (and their rows live) for it to adopt."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        kept = await self._replicas.close(hand_over=hand_over)
        now = self._clock.now()
        for deployment in self._fleet.all():
            self._recorder.account(deployment, now)
            await self._recorder.save(deployment)
            # Other instances route on these rows: they must not send requests to replicas gone with it.
            for replica in [] if kept else list(deployment.replicas.values()):
                await self._recorder.replica(replica.replica_id, ReplicaStatus.stopped, stopped_at=now,
                                             reason="its control plane stopped")
            deployment.replicas.clear()
        await self._recorder.flush()
        await self._probes.close()
        await self._adapters.close()

    def wake(self, deployment: LiveDeployment) -> None:
        """A request is waiting for a replica: reconcile now rather than at the next tick."""
        self._kick.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad tick must not stop the controller; the next one retries
                log.exception("controller tick failed")
            await wait_at_most(self._kick, self._tick_s)
            self._kick.clear()

    async def tick(self) -> None:
        await self._recorder.flush()  # what a database outage held back, as soon as it answers
        for deployment in self._fleet.all():
            if deployment.status in DeploymentStatus.managed() or deployment.status is DeploymentStatus.failed:
                await self.reconcile(deployment)
        if self._history is not None:
            await self._history.sample(self._fleet.all(), self._clock.now())

    async def reconcile(self, deployment: LiveDeployment) -> Decision:
        """One deployment, one pass. A failed one is passed over until its retry is due; it stays `failed`
        (with its cause) while it tries, until a replica is ready."""
        now = self._clock.now()
        self._recorder.account(deployment, now)
        await self._replicas.check(deployment)
        if deployment.status is DeploymentStatus.failed:
            if not retry_due(deployment.retry_at, now):
                return _no_decision(deployment)
            deployment.retry_at = None  # one try at a time: the next failure sets the next retry
        await self._probes.scrape_engines(deployment)
        await self._adapters.sync(deployment)
        observation = observe(deployment, now)
        deployment.observed = MergedWindow(observation.stats, 1 + len(deployment.peer_windows), now)
        decision = decide(deployment.spec, observation, deployment.autoscaler_state, now)
        deployment.autoscaler_state = decision.next_state
        await self._apply(deployment, decision, observation.current_replicas, now)
        return decision

    async def _apply(self, deployment: LiveDeployment, decision: Decision, current: int, now: float) -> None:
        if decision.desired > current:
            if current == 0 and deployment.status is DeploymentStatus.paused:
                await self._recorder.event(deployment, "resumed", f"Waking up: {decision.reason}", decision.inputs)
                deployment.awake_since = now
            self._replicas.grow(deployment, decision.desired - current, now)
        elif decision.desired < current:
            self._replicas.shrink(deployment, current - decision.desired)
        self._replicas.retire_outdated(deployment, decision.desired)
        if decision.desired != current:
            await self._recorder.event(
                deployment, "scaled", f"{current} -> {decision.desired} replicas: {decision.reason}",
                {**decision.inputs, **engine_queues(deployment), "rule": decision.rule, "before": current,
                 "after": decision.desired, "instances_reporting": 1 + len(deployment.peer_windows)})
        if deployment.status in DeploymentStatus.managed():  # not if a start failed or a user stopped it meanwhile
            await self._recorder.set_status(deployment, derived_status(deployment, decision.desired))
        if decision.desired != current or self._recorder.save_due(deployment, now, STATE_SAVE_INTERVAL_S):
            await self._recorder.save(deployment)


def derived_status(deployment: LiveDeployment, desired: int) -> DeploymentStatus:
    """Status from facts: any ready replica -> running; none live and none wanted -> paused."""
    if deployment.count(ReplicaStatus.ready):
        return DeploymentStatus.running
    if desired == 0 and not deployment.count(ReplicaStatus.starting) and not deployment.pending_starts:
        return DeploymentStatus.paused
    return DeploymentStatus.provisioning


def _no_decision(deployment: LiveDeployment) -> Decision:
    return Decision(desired=0, reason=f"deployment failed: {deployment.status_reason}", rule="hold",
                    next_state=deployment.autoscaler_state, inputs={})
