"""The controller: keeps every deployment's replicas where the autoscaler says, and records why.

Every tick, for each deployment: load (metrics window + replica states -> Observation) -> decide
(`autoscaler.decision.decide`, pure) -> apply (start replicas, or drain and stop the chosen ones) ->
record (status, an event with the numbers behind every change). Starting replicas are health-checked
(`/health`, then `/v1/models`) by a task each; draining replicas finish their in-flight requests
first. The flow is written up in docs/controller.md.

User actions (create, update, stop, resume, delete) come through the methods below, so the live
fleet and the store never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from inferstack.autoscaler.decision import AutoscalerState, Decision, Observation, decide
from inferstack.autoscaler.victims import choose_victims
from inferstack.clock import Clock
from inferstack.fleet import Fleet, LiveDeployment, LiveReplica
from inferstack.providers.base import Provider, ProviderError
from inferstack.spec import (
    REPLICA_SHAPING_FIELDS,
    DeploymentSpec,
    DeploymentStatus,
    DeploymentUpdate,
    ReplicaStatus,
)
from inferstack.store import DeploymentRow, ReplicaRow, Store, new_id

log = logging.getLogger("inferstack.controller")

# A replica that fails this many starts in a row fails the deployment: a bad model id or engine flag
# would otherwise restart forever (and bill for it).
MAX_CONSECUTIVE_START_FAILURES = 3
STATE_SAVE_INTERVAL_S = 15.0


class Controller:
    def __init__(self, store: Store, fleet: Fleet, provider: Provider, clock: Clock, *,
                 tick_s: float = 1.0, startup_timeout_s: float = 900.0, health_poll_s: float = 0.25) -> None:
        self._store = store
        self.fleet = fleet
        self._provider = provider
        self._clock = clock
        self._tick_s = tick_s
        self._startup_timeout_s = startup_timeout_s
        self._health_poll_s = health_poll_s
        self._kick = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._saved_at: dict[str, float] = {}

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        now = self._clock.now()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        await self._db(self._store.mark_orphaned_replicas, now, "control plane restarted")
        for row in await self._db(self._store.list_deployments):
            self.fleet.add(_live_from_row(row, now))
        self._loop_task = asyncio.create_task(self._run(), name="controller-loop")

    async def stop(self) -> None:
        """Stop the loop and every replica: a stopped control plane leaves nothing running."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._provider.close()
        now = self._clock.now()
        for deployment in self.fleet.all():
            self._account(deployment, now)
            await self._save(deployment)
        if self._session is not None:
            await self._session.close()

    def wake(self, deployment: LiveDeployment) -> None:
        """A request is waiting for a replica: reconcile now rather than at the next tick."""
        self._kick.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad tick must not stop the controller; the next one retries
                log.exception("controller tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._tick_s)
            self._kick.clear()

    async def tick(self) -> None:
        for deployment in self.fleet.all():
            if deployment.status in DeploymentStatus.managed():
                await self.reconcile(deployment)

    # --- one deployment, one pass: load -> decide -> apply -> record ---------------------------
    async def reconcile(self, deployment: LiveDeployment) -> Decision:
        now = self._clock.now()
        self._account(deployment, now)
        await self._reap_exited(deployment, now)
        if deployment.status is DeploymentStatus.failed:
            return _no_decision(deployment)
        await self._scrape_engines(deployment)
        observation = self._observe(deployment, now)
        decision = decide(deployment.spec, observation, deployment.autoscaler_state, now)
        deployment.autoscaler_state = decision.next_state
        current = observation.current_replicas
        if decision.desired > current:
            if current == 0 and deployment.status is DeploymentStatus.paused:
                await self._event(deployment, "resumed", f"Waking up: {decision.reason}", decision.inputs)
                deployment.awake_since = now
            for _ in range(decision.desired - current):
                # In the background: a provider may take minutes (a cloud instance), and the loop
                # must keep serving every other deployment meanwhile.
                deployment.pending_starts += 1
                self._spawn(self._start_replica(deployment, now))
        elif decision.desired < current:
            current_shape = [r for r in deployment.replicas.values() if not r.outdated]
            for replica in choose_victims(current_shape, current - decision.desired):
                self._drain(deployment, replica)
        self._retire_outdated(deployment, decision.desired)
        if decision.desired != current:
            engines = _engine_queues(deployment)
            await self._event(deployment, "scaled", f"{current} -> {decision.desired} replicas: {decision.reason}",
                              {**decision.inputs, **engines, "rule": decision.rule, "before": current,
                               "after": decision.desired})
        await self._set_status(deployment, self._derived_status(deployment, decision.desired))
        if now - self._saved_at.get(deployment.id, 0.0) >= STATE_SAVE_INTERVAL_S or decision.desired != current:
            await self._save(deployment)
        return decision

    def _retire_outdated(self, deployment: LiveDeployment, desired: int) -> None:
        """Rolling replacement after a reshaping update: outdated replicas keep serving only while the
        new shape has fewer ready replicas than desired. Desired 2, one new replica ready -> 1 outdated
        stays; both ready -> none."""
        outdated = [r for r in deployment.replicas.values() if r.outdated and r.status is ReplicaStatus.ready]
        ready_new = sum(1 for r in deployment.ready_replicas() if not r.outdated)
        excess = len(outdated) - max(0, desired - ready_new)
        for replica in choose_victims(outdated, max(0, excess)):
            self._drain(deployment, replica)

    def _observe(self, deployment: LiveDeployment, now: float) -> Observation:
        spec = deployment.spec
        stats = deployment.metrics.observe(now, spec.metrics_window_s, spec.panic_window_s)
        # The idle clock starts at creation or wake-up, so a fresh deployment is not paused at once.
        last = max(stats.last_activity_at or 0.0, deployment.awake_since)
        return Observation(
            stats=replace(stats, last_activity_at=last),
            current_replicas=deployment.wanted(),
            ready_replicas=deployment.count(ReplicaStatus.ready),
            queued_requests=deployment.queued,
            price_per_replica_hour=spec.price_per_replica_hour,
        )

    async def _scrape_engines(self, deployment: LiveDeployment) -> None:
        """Read each ready replica's own queue (vLLM's Prometheus gauges), for the record and `status`."""
        ready = deployment.ready_replicas()
        if ready:
            await asyncio.gather(*(self._scrape(replica) for replica in ready))

    async def _scrape(self, replica: LiveReplica) -> None:
        assert self._session is not None
        try:
            async with self._session.get(replica.url + "/metrics", timeout=aiohttp.ClientTimeout(total=1)) as got:
                text = await got.text() if got.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return
        gauges = engine_gauges(text)
        replica.engine_running = gauges.get("vllm:num_requests_running")
        replica.engine_waiting = gauges.get("vllm:num_requests_waiting")

    @staticmethod
    def _derived_status(deployment: LiveDeployment, desired: int) -> DeploymentStatus:
        """Status from facts: any ready replica -> running; none live and none wanted -> paused."""
        if deployment.count(ReplicaStatus.ready):
            return DeploymentStatus.running
        if desired == 0 and not deployment.count(ReplicaStatus.starting) and not deployment.pending_starts:
            return DeploymentStatus.paused
        return DeploymentStatus.provisioning

    # --- replicas ------------------------------------------------------------------------------
    async def _start_replica(self, deployment: LiveDeployment, now: float) -> None:
        replica_id = new_id("rep")
        api_key = secrets.token_urlsafe(24)
        try:
            handle = await self._provider.start(deployment.id, deployment.name, replica_id, deployment.spec, api_key)
        except ProviderError as exc:
            await self._fail(deployment, str(exc))
            return
        finally:
            deployment.pending_starts -= 1
        if deployment.status not in DeploymentStatus.managed():
            await self._provider.stop(handle)  # stopped or deleted while the replica was on its way
            return
        replica = LiveReplica(handle=handle, api_key=api_key, status=ReplicaStatus.starting, started_at=now)
        deployment.replicas[replica_id] = replica
        await self._db(self._store.add_replica, ReplicaRow(
            id=replica_id, deployment_id=deployment.id, status=ReplicaStatus.starting, url=handle.url,
            pid=handle.pid, log_path=handle.log_path, created_at=now))
        self._spawn(self._await_healthy(deployment, replica))

    async def _await_healthy(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        deadline = replica.started_at + self._startup_timeout_s
        while replica.status is ReplicaStatus.starting:
            if self._provider.exit_code(replica.handle) is not None:
                return  # the next reconcile reaps it and counts the failure
            if await self._healthy(replica):
                await self._mark_ready(deployment, replica)
                return
            if self._clock.now() > deadline:
                await self._replica_failed(deployment, replica, f"not healthy within {self._startup_timeout_s:g} s")
                await self._provider.stop(replica.handle)
                return
            await self._clock.sleep(self._health_poll_s)

    async def _healthy(self, replica: LiveReplica) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(replica.url + "/health") as health:
                if health.status != 200:
                    return False
            async with self._session.get(replica.url + "/v1/models",
                                         headers={"Authorization": f"Bearer {replica.api_key}"}) as models:
                return models.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _mark_ready(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        now = self._clock.now()
        replica.status, replica.ready_at = ReplicaStatus.ready, now
        deployment.consecutive_start_failures = 0
        deployment.notify()  # release held requests the moment a replica can take them
        await self._db(self._store.update_replica, replica.replica_id, status=ReplicaStatus.ready, ready_at=now)
        await self._event(deployment, "replica_ready",
                          f"Replica {replica.replica_id} is ready after {now - replica.started_at:.1f} s",
                          {"replica_id": replica.replica_id, "startup_s": round(now - replica.started_at, 3)})
        await self._set_status(deployment, DeploymentStatus.running)
        self._kick.set()  # an outdated replica may now retire (see _retire_outdated)

    def _drain(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        """Stop routing to the replica now; stop it once its in-flight requests finish (or time out)."""
        replica.status = ReplicaStatus.draining
        self._spawn(self._finish_drain(deployment, replica))

    async def _finish_drain(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        await self._db(self._store.update_replica, replica.replica_id, status=ReplicaStatus.draining)
        deadline = self._clock.now() + deployment.spec.drain_timeout_s
        while replica.outstanding + replica.batch_outstanding > 0 and self._clock.now() < deadline:
            await self._clock.sleep(0.05)
        cut = replica.outstanding + replica.batch_outstanding
        await self._provider.stop(replica.handle)
        deployment.replicas.pop(replica.replica_id, None)
        now = self._clock.now()
        reason = "drained" if cut == 0 else f"drain timeout: {cut} requests cut off"
        await self._db(self._store.update_replica, replica.replica_id, status=ReplicaStatus.stopped,
                       stopped_at=now, reason=reason)
        await self._event(deployment, "replica_stopped", f"Replica {replica.replica_id} stopped ({reason})",
                          {"replica_id": replica.replica_id, "cut_off_requests": cut})
        self._kick.set()  # status may now be "paused"

    async def _reap_exited(self, deployment: LiveDeployment, now: float) -> None:
        for replica in list(deployment.replicas.values()):
            if replica.status is ReplicaStatus.draining:
                continue
            code = self._provider.exit_code(replica.handle)
            if code is None:
                continue
            was_ready = replica.status is ReplicaStatus.ready
            await self._replica_failed(deployment, replica, f"exited with code {code}{_log_tail(replica)}")
            if not was_ready:
                deployment.consecutive_start_failures += 1
                if deployment.consecutive_start_failures >= MAX_CONSECUTIVE_START_FAILURES:
                    await self._fail(deployment, f"{MAX_CONSECUTIVE_START_FAILURES} replicas in a row exited "
                                                 f"before becoming ready; last: exited with code {code}"
                                                 f"{_log_tail(replica)}")

    async def _replica_failed(self, deployment: LiveDeployment, replica: LiveReplica, reason: str) -> None:
        deployment.replicas.pop(replica.replica_id, None)
        replica.status = ReplicaStatus.failed
        await self._db(self._store.update_replica, replica.replica_id, status=ReplicaStatus.failed,
                       stopped_at=self._clock.now(), reason=reason)
        await self._event(deployment, "replica_failed", f"Replica {replica.replica_id} failed: {reason}",
                          {"replica_id": replica.replica_id})

    async def _fail(self, deployment: LiveDeployment, reason: str) -> None:
        deployment.status_reason = reason
        await self._set_status(deployment, DeploymentStatus.failed)
        await self._stop_all(deployment)  # held requests get a clear error now instead of waiting out their deadline

    async def _stop_all(self, deployment: LiveDeployment) -> None:
        """Stop every replica. Callers set a status the loop leaves alone first, so no tick refills it."""
        deployment.notify()  # held requests re-check the status and get a clear error now
        replicas = list(deployment.replicas.values())
        deployment.replicas.clear()
        await asyncio.gather(*(self._provider.stop(r.handle) for r in replicas))
        now = self._clock.now()
        for replica in replicas:
            await self._db(self._store.update_replica, replica.replica_id, status=ReplicaStatus.stopped,
                           stopped_at=now, reason="deployment stopped")

    # --- user actions --------------------------------------------------------------------------
    async def create(self, tenant_id: str, spec: DeploymentSpec) -> LiveDeployment:
        now = self._clock.now()
        row = await self._db(self._store.create_deployment, tenant_id, spec, now)
        deployment = _live_from_row(row, now)
        self.fleet.add(deployment)
        await self._event(deployment, "created", f"Created {spec.hf_model_id} on {spec.hardware_profile} "
                          f"({spec.min_replicas}..{spec.max_replicas} replicas, engine {spec.engine})", {})
        self._kick.set()
        return deployment

    async def update(self, deployment: LiveDeployment, change: DeploymentUpdate) -> None:
        """Apply a spec change. Replicas started under the old shape are replaced one by one, each
        serving until its replacement is ready."""
        new_spec = deployment.spec.with_changes(change.changes())  # raises ValidationError, changes nothing
        changes = change.changes()
        deployment.spec = new_spec
        await self._db(self._store.save_spec, deployment.id, new_spec, self._clock.now())
        if change.immediate_scale_down:
            deployment.autoscaler_state = replace(deployment.autoscaler_state, skip_stabilisation_once=True)
        changed = sorted(changes)  # names only: a token's value never reaches the record
        await self._event(deployment, "updated", f"Spec updated: {', '.join(changed) or 'nothing'}"
                          + (" (immediate scale-down)" if change.immediate_scale_down else ""), {"fields": changed})
        if REPLICA_SHAPING_FIELDS & changes.keys():
            # Rolling: the autoscaler starts replacements of the new shape, and each one that becomes
            # ready retires an outdated replica, which serves until then (a starting one goes at once).
            for replica in list(deployment.replicas.values()):
                if replica.status is ReplicaStatus.starting:
                    self._drain(deployment, replica)
                elif replica.status is ReplicaStatus.ready:
                    replica.outdated = True
        self._kick.set()

    async def stop_deployment(self, deployment: LiveDeployment) -> None:
        deployment.status_reason = "stopped by the user"
        await self._set_status(deployment, DeploymentStatus.stopped)
        await self._stop_all(deployment)

    async def resume(self, deployment: LiveDeployment) -> None:
        now = self._clock.now()
        deployment.awake_since = now
        deployment.consecutive_start_failures = 0
        deployment.status_reason = ""
        deployment.autoscaler_state = AutoscalerState()
        await self._set_status(deployment, DeploymentStatus.provisioning)
        await self._event(deployment, "resumed", "Resumed by the user", {})
        self._kick.set()

    async def delete(self, deployment: LiveDeployment) -> None:
        await self._set_status(deployment, DeploymentStatus.deleted)
        self.fleet.remove(deployment.id)
        await self._stop_all(deployment)

    # --- records -------------------------------------------------------------------------------
    def _account(self, deployment: LiveDeployment, now: float) -> None:
        """Replica-seconds since the last tick: what the deployment costs (price x hours)."""
        live = sum(1 for r in deployment.replicas.values() if r.status in ReplicaStatus.live())
        elapsed = max(0.0, now - (deployment.last_replica_seconds_at or now))
        deployment.last_replica_seconds_at = now
        deployment.replica_seconds += live * elapsed

    async def _set_status(self, deployment: LiveDeployment, status: DeploymentStatus) -> None:
        if status is deployment.status:
            return
        before, deployment.status = deployment.status, status
        if status is not DeploymentStatus.failed and status is not DeploymentStatus.stopped:
            deployment.status_reason = ""
        await self._db(self._store.update_deployment, deployment.id, status=status,
                       status_reason=deployment.status_reason, updated_at=self._clock.now())
        await self._event(deployment, "status", f"Status {before} -> {status}"
                          + (f": {deployment.status_reason}" if deployment.status_reason else ""),
                          {"before": before.value, "after": status.value})

    async def _save(self, deployment: LiveDeployment) -> None:
        self._saved_at[deployment.id] = self._clock.now()
        await self._db(self._store.update_deployment, deployment.id,
                       autoscaler_state=deployment.autoscaler_state.to_json(),
                       desired_replicas=deployment.wanted(),
                       replica_seconds=deployment.replica_seconds,
                       cost_usd=deployment.replica_seconds / 3600 * deployment.spec.price_per_replica_hour,
                       last_activity_at=max(deployment.metrics.last_activity_at or 0.0, deployment.awake_since))

    async def _event(self, deployment: LiveDeployment, kind: str, message: str, data: dict[str, Any]) -> None:
        log.info("%s %s: %s", deployment.id, kind, message)
        await self._db(self._store.add_event, deployment.id, self._clock.now(), kind, message, data)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _db(function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)


def _live_from_row(row: DeploymentRow, now: float) -> LiveDeployment:
    status = DeploymentStatus(row.status)
    if status in DeploymentStatus.managed() and status is not DeploymentStatus.paused:
        status = DeploymentStatus.provisioning  # its replicas went with the previous control plane
    return LiveDeployment(
        id=row.id, tenant_id=row.tenant_id, name=row.name, spec=row.deployment_spec(), status=status,
        status_reason=row.status_reason, created_at=row.created_at,
        awake_since=max(row.last_activity_at, now if status is DeploymentStatus.provisioning else 0.0),
        autoscaler_state=AutoscalerState.from_json(row.autoscaler_state or {}),
        replica_seconds=row.replica_seconds, last_replica_seconds_at=now,
    )


def engine_gauges(text: str) -> dict[str, int]:
    """Sum vLLM's request gauges over their label sets from a Prometheus text page."""
    totals: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
            totals[family.name] = int(sum(sample.value for sample in family.samples))
    return totals


def _engine_queues(deployment: LiveDeployment) -> dict[str, int]:
    scraped = [r for r in deployment.ready_replicas() if r.engine_running is not None]
    if not scraped:
        return {}
    return {"engine_running": sum(r.engine_running or 0 for r in scraped),
            "engine_waiting": sum(r.engine_waiting or 0 for r in scraped)}


def _no_decision(deployment: LiveDeployment) -> Decision:
    return Decision(desired=0, reason=f"deployment failed: {deployment.status_reason}", rule="hold",
                    next_state=deployment.autoscaler_state, inputs={})


def _log_tail(replica: LiveReplica, lines: int = 3) -> str:
    try:
        tail = Path(replica.handle.log_path).read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip()[:200] for line in tail)) if tail else ""
