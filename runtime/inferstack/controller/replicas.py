"""The replica lifecycle: start, await healthy, drain, reap the exited, stop all, retire the outdated.

Replica status: starting -> ready -> draining -> stopped, or failed; a ready replica whose provider says
it does not take requests (a Kubernetes pod that is not Ready) is `starting` again until it does.
Starts, health checks and drains run as background tasks owned here (a cloud instance takes minutes to
start and a drain waits for streams to end: the loop must keep serving every other deployment
meanwhile); `close` ends them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from enum import Enum
from pathlib import Path
from typing import Any

from inferstack.autoscaler.victims import choose_victims
from inferstack.clock import Clock
from inferstack.controller.backoff import retry_delay
from inferstack.controller.probes import HealthProbe
from inferstack.controller.recorder import Recorder
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.providers.base import Provider, ProviderError, remove_deployment, serving
from inferstack.spec import DeploymentStatus, ReplicaStatus
from inferstack.store import ReplicaRow, new_id

log = logging.getLogger("inferstack.controller")

# A replica that fails this many starts in a row fails the deployment: a bad model id or engine flag
# would otherwise restart forever (and bill for it). A failed deployment is tried again after a backoff.
MAX_CONSECUTIVE_START_FAILURES = 3
DRAIN_POLL_S = 0.05
# A failed deployment's own replicas may still be starting (and may yet come up) or be tried again.
_KEEPS_REPLICAS = DeploymentStatus.managed() | {DeploymentStatus.failed}


class ReplicaLifecycle:
    def __init__(self, provider: Provider, recorder: Recorder, probe: HealthProbe, clock: Clock,
                 nudge: Callable[[], None], *, startup_timeout_s: float = 900.0, health_poll_s: float = 0.25) -> None:
        """`nudge` asks the loop for a pass now: a replica became ready or went, so status may change."""
        self._provider = provider
        self._recorder = recorder
        self._probe = probe
        self._clock = clock
        self._nudge = nudge
        self._startup_timeout_s = startup_timeout_s
        self._health_poll_s = health_poll_s
        self._tasks: set[asyncio.Task[Any]] = set()

    async def close(self, *, hand_over: bool = False) -> bool:
        """End every start, health check and drain in progress, then stop every replica the provider runs
        (with `hand_over`, only those that cannot outlive this process: another instance takes over).
        True if the replicas keep running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hand_over:
            return await self._provider.hand_over()
        await self._provider.close()
        return False

    async def adopt(self, deployment: LiveDeployment, rows: list[ReplicaRow]) -> set[str]:
        """Take over the replicas an earlier leader recorded live that still run (a handover, or a leader
        that died while its cloud instances ran on): same ids, same status, nothing restarted. Returns
        their ids; a starting one goes on being checked, a draining one goes on draining."""
        handles = await self._provider.adopt(deployment.id, deployment.name, deployment.spec, [r.id for r in rows])
        recorded = {row.id: row for row in rows}
        for handle in handles:
            row = recorded[handle.replica_id]
            replica = LiveReplica(handle=handle, api_key=handle.api_key or row.api_key,
                                  status=ReplicaStatus(row.status), started_at=row.created_at, ready_at=row.ready_at)
            deployment.replicas[handle.replica_id] = replica
            if replica.status is ReplicaStatus.starting:
                self._spawn(self._await_healthy(deployment, replica, replica.started_at + self._startup_timeout_s))
            elif replica.status is ReplicaStatus.draining:
                self.drain(deployment, replica)
        if handles:
            deployment.notify()
            await self._recorder.event(deployment, "adopted", f"Kept {len(handles)} running replica(s) of the "
                                       "previous leader", {"replica_ids": sorted(h.replica_id for h in handles)})
        return {h.replica_id for h in handles}

    # --- up ------------------------------------------------------------------------------------
    def grow(self, deployment: LiveDeployment, count: int, now: float) -> None:
        for _ in range(count):
            deployment.pending_starts += 1  # counted as wanted from now on, so the next pass asks for no more
            self._spawn(self._start(deployment, now))

    async def _start(self, deployment: LiveDeployment, now: float) -> None:
        replica_id = new_id("rep")
        api_key = secrets.token_urlsafe(24)
        spec = deployment.spec
        try:
            handle = await self._provider.start(deployment.id, deployment.name, replica_id, spec, api_key)
        except ProviderError as exc:
            await self.fail(deployment, str(exc))
            return
        finally:
            deployment.pending_starts -= 1
        if deployment.status not in _KEEPS_REPLICAS:
            await self._provider.stop(handle)  # stopped or deleted while the replica was on its way
            return
        replica = LiveReplica(handle=handle, api_key=handle.api_key or api_key, status=ReplicaStatus.starting,
                              started_at=now, adapters={a.name: a.source for a in spec.adapters})
        deployment.replicas[replica_id] = replica
        # The health check goes before the record: a replica is probed to ready (or stopped) whatever the
        # database does meanwhile.
        self._spawn(self._await_healthy(deployment, replica, now + self._startup_timeout_s))
        await self._recorder.add_replica(ReplicaRow(
            id=replica_id, deployment_id=deployment.id, status=ReplicaStatus.starting, url=handle.url,
            api_key=replica.api_key, pid=handle.pid, log_path=handle.log_path, created_at=now))

    async def _await_healthy(self, deployment: LiveDeployment, replica: LiveReplica, deadline: float) -> None:
        """Ready once both the provider (a pod's Ready condition) and our own probe say so."""
        while replica.status is ReplicaStatus.starting:
            if self._provider.exit_code(replica.handle) is not None:
                return  # the next pass reaps it and counts the failure
            if serving(self._provider, replica.handle) and await self._probe.healthy(replica):
                await self._mark_ready(deployment, replica)
                return
            if self._clock.now() > deadline:
                await self._provider.stop(replica.handle)
                await self._start_failed(deployment, replica, f"not healthy within {self._startup_timeout_s:g} s")
                return
            await self._clock.sleep(self._health_poll_s)

    async def _mark_ready(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        now = self._clock.now()
        again = replica.ready_at is not None  # back after its provider said it was not ready: the start-up
        replica.status, replica.ready_at = ReplicaStatus.ready, replica.ready_at or now  # time stays the first
        deployment.consecutive_start_failures = deployment.failed_attempts = 0
        deployment.retry_at = None
        deployment.notify()  # release held requests the moment a replica can take them
        await self._recorder.replica(replica.replica_id, ReplicaStatus.ready, ready_at=replica.ready_at)
        startup_s = round(replica.ready_at - replica.started_at, 3)
        await self._recorder.event(deployment, "replica_ready", f"Replica {replica.replica_id} is ready "
                                   + ("again" if again else f"after {startup_s:.1f} s"),
                                   {"replica_id": replica.replica_id, "startup_s": startup_s})
        await self._recorder.set_status(deployment, DeploymentStatus.running)
        self._nudge()  # an outdated replica may now retire (see retire_outdated)

    # --- down ----------------------------------------------------------------------------------
    def shrink(self, deployment: LiveDeployment, count: int) -> None:
        """Drain `count` replicas of the current shape (outdated ones go by `retire_outdated`)."""
        current_shape = [r for r in deployment.replicas.values() if not r.outdated]
        for replica in choose_victims(current_shape, count):
            self.drain(deployment, replica)

    def reshape(self, deployment: LiveDeployment) -> None:
        """The spec's replica shape changed: starting replicas go at once; ready ones become outdated and
        serve until replacements of the new shape are ready."""
        for replica in list(deployment.replicas.values()):
            if replica.status is ReplicaStatus.starting:
                self.drain(deployment, replica)
            elif replica.status is ReplicaStatus.ready:
                replica.outdated = True

    def retire_outdated(self, deployment: LiveDeployment, desired: int) -> None:
        """Rolling replacement after a reshaping update: outdated replicas keep serving only while the
        new shape has fewer ready replicas than desired. Desired 2, one new replica ready -> 1 outdated
        stays; both ready -> none."""
        outdated = [r for r in deployment.replicas.values() if r.outdated and r.status is ReplicaStatus.ready]
        ready_new = sum(1 for r in deployment.ready_replicas() if not r.outdated)
        excess = len(outdated) - max(0, desired - ready_new)
        for replica in choose_victims(outdated, max(0, excess)):
            self.drain(deployment, replica)

    def drain(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        """Stop routing to the replica now; stop it once its in-flight requests finish (or time out)."""
        replica.status = ReplicaStatus.draining
        self._spawn(self._finish_drain(deployment, replica))

    async def _finish_drain(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        await self._recorder.replica(replica.replica_id, ReplicaStatus.draining)
        deadline = self._clock.now() + deployment.spec.drain_timeout_s
        while replica.outstanding + replica.batch_outstanding > 0 and self._clock.now() < deadline:
            await self._clock.sleep(DRAIN_POLL_S)
        cut = replica.outstanding + replica.batch_outstanding
        await self._provider.stop(replica.handle)
        deployment.replicas.pop(replica.replica_id, None)
        reason = "drained" if cut == 0 else f"drain timeout: {cut} requests cut off"
        await self._recorder.replica(replica.replica_id, ReplicaStatus.stopped, stopped_at=self._clock.now(),
                                     reason=reason)
        await self._recorder.event(deployment, "replica_stopped", f"Replica {replica.replica_id} stopped ({reason})",
                                   {"replica_id": replica.replica_id, "cut_off_requests": cut})
        self._nudge()  # status may now be "paused"

    async def remove(self, deployment: LiveDeployment) -> None:
        """The deployment is deleted: its replicas stop, then what the provider made for it goes too."""
        await self.stop_all(deployment)
        await remove_deployment(self._provider, deployment.id, deployment.name)
        await self._recorder.removed(deployment)

    async def remove_left_behind(self, deployment: LiveDeployment, rows: list[ReplicaRow]) -> None:
        """A deployment deleted while no instance led: stop its replicas that outlived their leader (found
        as `adopt` finds them; their `rows` are then recorded stopped by the caller, as orphans), then
        remove what the provider made for it."""
        handles = await self._provider.adopt(deployment.id, deployment.name, deployment.spec, [r.id for r in rows])
        await asyncio.gather(*(self._provider.stop(handle) for handle in handles))
        if handles:
            await self._recorder.event(deployment, "replicas_stopped",
                                       f"Stopped {len(handles)} replicas of the deleted deployment left running",
                                       {"replica_ids": [h.replica_id for h in handles]})
        await remove_deployment(self._provider, deployment.id, deployment.name)
        await self._recorder.removed(deployment)

    async def stop_all(self, deployment: LiveDeployment) -> None:
        """Stop every replica at once. Callers set a status the loop leaves alone first, so no pass refills it."""
        deployment.notify()  # held requests re-check the status and get a clear error now
        replicas = list(deployment.replicas.values())
        deployment.replicas.clear()
        await asyncio.gather(*(self._provider.stop(r.handle) for r in replicas))
        now = self._clock.now()
        for replica in replicas:
            await self._recorder.replica(replica.replica_id, ReplicaStatus.stopped, stopped_at=now,
                                         reason="deployment stopped")

    # --- what the provider says ----------------------------------------------------------------
    async def check(self, deployment: LiveDeployment) -> None:
        """Each replica as its provider sees it (see `provider_verdict`). An exited one: a ready one is
        replaced by the next decision; too many failed starts in a row fail the deployment, with the
        replica log's last lines as the reason. A ready one its provider says does not take requests is
        routed around until it does again (or is replaced when it does not within the start-up timeout)."""
        for replica in list(deployment.replicas.values()):
            code = self._provider.exit_code(replica.handle)
            verdict = provider_verdict(replica.status, code, serving(self._provider, replica.handle))
            if verdict is Verdict.exited:
                reason = f"exited with code {code}{_log_tail(replica)}"
                if replica.status is ReplicaStatus.ready:
                    await self._failed(deployment, replica, reason)  # the next decision replaces it
                else:
                    await self._start_failed(deployment, replica, reason)
            elif verdict is Verdict.not_serving:
                await self._not_serving(deployment, replica)

    async def _not_serving(self, deployment: LiveDeployment, replica: LiveReplica) -> None:
        replica.status = ReplicaStatus.starting  # no new requests (here, and on every instance from its row)
        await self._recorder.replica(replica.replica_id, ReplicaStatus.starting)
        where = replica.handle.provider or "its provider"
        await self._recorder.event(deployment, "replica_not_ready",
                                   f"Replica {replica.replica_id} is not ready on {where} (a Kubernetes pod: its "
                                   "Ready condition): no requests go to it until it is",
                                   {"replica_id": replica.replica_id})
        self._spawn(self._await_healthy(deployment, replica, self._clock.now() + self._startup_timeout_s))
        self._nudge()  # status may now be "provisioning"

    async def _start_failed(self, deployment: LiveDeployment, replica: LiveReplica, reason: str) -> None:
        await self._failed(deployment, replica, reason)
        deployment.consecutive_start_failures += 1
        if deployment.consecutive_start_failures >= MAX_CONSECUTIVE_START_FAILURES:
            await self.fail(deployment, f"{deployment.consecutive_start_failures} replicas in a row failed to "
                                        f"start; last: {reason}")

    async def fail(self, deployment: LiveDeployment, reason: str) -> None:
        """The deployment cannot start: it is `failed` with the cause, its replicas stop (held requests get
        the cause now, not at their deadline), and the loop tries again after a backoff that doubles with
        each failure in a row (`backoff.retry_delay`), so a hopeless one costs an event or three per try."""
        deployment.failed_attempts += 1
        delay = retry_delay(deployment.failed_attempts)
        deployment.retry_at = self._clock.now() + delay
        await self._recorder.set_status(deployment, DeploymentStatus.failed, reason)
        await self._recorder.event(deployment, "start_failed",
                                   f"Start failed ({deployment.failed_attempts} in a row), next try in {delay:g} s: "
                                   f"{reason}", {"attempt": deployment.failed_attempts, "retry_in_s": delay})
        await self.stop_all(deployment)

    async def _failed(self, deployment: LiveDeployment, replica: LiveReplica, reason: str) -> None:
        deployment.replicas.pop(replica.replica_id, None)
        replica.status = ReplicaStatus.failed
        await self._recorder.replica(replica.replica_id, ReplicaStatus.failed, stopped_at=self._clock.now(),
                                     reason=reason)
        await self._recorder.event(deployment, "replica_failed", f"Replica {replica.replica_id} failed: {reason}",
                                   {"replica_id": replica.replica_id})

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("replica task failed", exc_info=task.exception())


class Verdict(Enum):
    exited = "exited"
    not_serving = "not_serving"


def provider_verdict(status: ReplicaStatus, exit_code: int | None, serving: bool) -> Verdict | None:
    """What the provider's report means for a replica: exited (replace it), a ready one that does not
    serve (route around it), or nothing to do. A draining replica is on its way out whatever it says."""
    if status is ReplicaStatus.draining:
        return None
    if exit_code is not None:
        return Verdict.exited
    if status is ReplicaStatus.ready and not serving:
        return Verdict.not_serving
    return None


def _log_tail(replica: LiveReplica, lines: int = 3) -> str:
    try:
        tail = Path(replica.handle.log_path).read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip()[:200] for line in tail)) if tail else ""
