"""Admission: when a request may go to a replica, which one, and the bookkeeping that goes with it.

`Admission.acquire` returns a `Lease`: the chosen replica together with its release, so what a request
counts on its replica is given back by the same object that took it, and the two can never drift. The
kind of request (interactive or batch) is a parameter of `acquire` only; the relay never sees it.

While no replica can take a request, admission holds it: the request counts in the deployment's
`queued` (the autoscaler wakes a paused deployment on it), the controller is nudged, and the request
waits for `ready_changed`, bounded by `max_queue_wait_s` and `max_queued_requests`. The choice among
the replicas that can take it is `routing.choose_replica`'s.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from inferstack.clock import Clock
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.gateway.routing import choose_replica
from inferstack.spec import DeploymentStatus

# Each replica takes at most this many batch requests at once; interactive requests are never limited,
# so they are not queued behind a batch at the gateway (vLLM's own scheduler shares the GPU).
BATCH_SLOTS_PER_REPLICA = 8

Heartbeat = Callable[[], Awaitable[None]]
_CLOSED = (DeploymentStatus.stopped, DeploymentStatus.failed, DeploymentStatus.deleted)


class WakeRequester:
    """What admission needs from the controller: a nudge to bring a deployment's replicas up now."""

    def wake(self, deployment: LiveDeployment) -> None: ...


class Lease:
    """One admitted request on one replica. `release()` gives back exactly what was taken: an interactive
    request counts in the replica's `outstanding`, a batch one holds one of its batch slots. Releasing
    twice is harmless, so a caller can release in a `finally` whatever happened before."""

    __slots__ = ("_held", "batch", "deadline", "deployment", "heartbeat", "replica")
    replica: LiveReplica

    def __init__(self, deployment: LiveDeployment, batch: bool, deadline: float, heartbeat: Heartbeat | None) -> None:
        self.deployment = deployment
        self.batch = batch
        self.deadline = deadline  # the request's bounds, kept so a retry waits under the same ones
        self.heartbeat = heartbeat
        self._held = False  # `replica` is set by the time acquire returns the lease

    def _take(self, replica: LiveReplica) -> None:
        if self.batch:
            replica.batch_outstanding += 1
        else:
            replica.outstanding += 1
        self.replica = replica
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self.batch:
            self.replica.batch_outstanding -= 1
            self.deployment.notify()  # a batch slot is free: a held batch request may go
        else:
            self.replica.outstanding -= 1


class Admission:
    def __init__(self, controller: WakeRequester, clock: Clock, heartbeat_s: float = 5.0,
                 rng: random.Random | None = None) -> None:
        self._controller = controller
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._rng = rng or random.Random()

    async def acquire(self, deployment: LiveDeployment, deadline: float, *, batch: bool = False,
                      heartbeat: Heartbeat | None = None) -> Lease:
        """A lease on a replica for one request, holding it until `deadline` while none can take it;
        `heartbeat` is awaited every `heartbeat_s` of waiting (streaming callers' SSE comments)."""
        lease = Lease(deployment, batch, deadline, heartbeat)
        lease._take(self._pick(deployment, batch, None) or await self._hold(lease, None))
        return lease

    async def reacquire(self, lease: Lease) -> None:
        """Move `lease` off its replica (its connection failed before any response byte) onto another,
        if there is one, under the request's original bounds. If that raises, the lease holds nothing."""
        failed = lease.replica.replica_id
        lease.release()
        lease._take(self._pick(lease.deployment, lease.batch, failed) or await self._hold(lease, failed))

    async def _hold(self, lease: Lease, exclude: str | None) -> LiveReplica:
        """Wait until a replica can take the request (one must have become ready, or a batch slot freed)."""
        deployment = lease.deployment
        queued = False
        try:
            while True:
                if deployment.status in _CLOSED:
                    raise ApiError(409 if deployment.status is DeploymentStatus.stopped else 503,
                                   f"Deployment {deployment.id} is {deployment.status}"
                                   + (f": {deployment.status_reason}" if deployment.status_reason else "."),
                                   code="deployment_unavailable")
                if not queued:
                    if deployment.queued >= deployment.spec.max_queued_requests:
                        raise ApiError(503, f"Deployment {deployment.id} has {deployment.queued} requests waiting "
                                            "for capacity already; retry later.", code="queue_full",
                                       headers={"Retry-After": "5"})
                    deployment.queued += 1
                    queued = True
                if not deployment.ready_replicas():
                    self._controller.wake(deployment)
                await self._wait(lease)
                replica = self._pick(deployment, lease.batch, exclude)
                if replica is not None:
                    return replica
        finally:
            if queued:
                deployment.queued -= 1

    async def _wait(self, lease: Lease) -> None:
        deployment = lease.deployment
        remaining = lease.deadline - self._clock.now()
        if remaining <= 0:
            raise ApiError(503, f"No replica of deployment {deployment.id} became ready within "
                                f"{deployment.spec.max_queue_wait_s:g} s.", code="no_capacity",
                           headers={"Retry-After": "30"})
        changed = deployment.ready_changed
        try:
            await asyncio.wait_for(changed.wait(), min(remaining, self._heartbeat_s))
        except TimeoutError:
            if lease.heartbeat is not None:
                await lease.heartbeat()

    def _pick(self, deployment: LiveDeployment, batch: bool, exclude: str | None) -> LiveReplica | None:
        """A replica that can take the request now; the failed one again only if it is the only one."""
        ready = deployment.ready_replicas()
        if batch:
            ready = [r for r in ready if r.batch_outstanding < BATCH_SLOTS_PER_REPLICA]
        return choose_replica(ready, self._rng, exclude) or (
            choose_replica(ready, self._rng) if exclude else None)
