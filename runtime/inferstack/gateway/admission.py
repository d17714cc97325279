"""Admission: when a request may go to a replica, which one, and the bookkeeping that goes with it.

`Admission.acquire` returns a `Lease`: the chosen replica together with its release, so what a request
counts on its replica is given back by the same object that took it, and the two can never drift. The
kind of request (interactive or batch) is a parameter of `acquire` only; the relay never sees it.

A replica takes at most `engine_capacity(spec)` requests at once (the engine's own sequence limit), so
work never piles up on one replica while another idles. While no replica can take a request, admission
holds it in the deployment's `HoldQueue`, first come first served: the request counts in `queued` (the
autoscaler wakes a paused deployment on it), the controller is nudged, and whichever replica frees a slot
or turns ready first serves the oldest held request; bounded by `max_queue_wait_s` and
`max_queued_requests`. The choice among the replicas with room is `routing.choose_replica`'s. The
simulator (`inferstack.simulate`) runs the same `HoldQueue` and `pick_replica`.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from inferstack.clock import Clock
from inferstack.engines.capacity import engine_capacity
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.gateway.routing import choose_replica
from inferstack.spec import DeploymentStatus

# Each replica takes at most this many batch requests at once, so interactive requests are not queued
# behind a batch at the gateway; both together stay within the engine's capacity.
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

    __slots__ = ("_held", "adapter", "batch", "deadline", "deployment", "heartbeat", "replica")
    replica: LiveReplica

    def __init__(self, deployment: LiveDeployment, batch: bool, deadline: float, heartbeat: Heartbeat | None,
                 adapter: str | None = None) -> None:
        self.deployment = deployment
        self.adapter = adapter  # a LoRA adapter's request goes only to replicas that have it loaded
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
            if self.deployment.queued:
                self.deployment.notify()  # a slot is free: the oldest held request may go


def pick_replica(ready: Sequence[LiveReplica], rng: random.Random, capacity: int, batch: bool,
                 exclude: str | None = None) -> LiveReplica | None:
    """A ready replica with room for one more request (fewer than `capacity` in flight, and a free batch
    slot for a batch request); the excluded (failed) one only if it is the only one with room."""
    room = [r for r in ready if r.outstanding + r.batch_outstanding < capacity
            and (not batch or r.batch_outstanding < BATCH_SLOTS_PER_REPLICA)]
    return choose_replica(room, rng, exclude) or (choose_replica(room, rng) if exclude else None)


W = TypeVar("W")


class HoldQueue(Generic[W]):
    """Requests held for one deployment, in arrival order. `serve` places them oldest first on whichever
    replica has room, so a wake spreads 40 held requests over the replicas as each turns ready (16 on the
    first, the next 16 on the second...) and no later request overtakes an earlier one of its kind."""

    def __init__(self) -> None:
        self._waiting: deque[W] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def push(self, waiter: W) -> None:
        self._waiting.append(waiter)

    def discard(self, waiter: W) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)

    def serve(self, place: Callable[[W], LiveReplica | None], give: Callable[[W, LiveReplica], None]) -> None:
        """Offer each held request, oldest first, a replica (`place`); `give` hands it over. A request that
        finds no room is skipped, not blocking: a batch request waiting for a batch slot must not hold up
        an interactive one behind it."""
        for waiter in list(self._waiting):
            replica = place(waiter)
            if replica is not None:
                self._waiting.remove(waiter)
                give(waiter, replica)


class _Held:
    __slots__ = ("exclude", "lease", "placed")

    def __init__(self, lease: Lease, exclude: str | None) -> None:
        self.lease = lease
        self.exclude = exclude
        self.placed = False


class Admission:
    def __init__(self, controller: WakeRequester, clock: Clock, heartbeat_s: float = 5.0,
                 rng: random.Random | None = None) -> None:
        self._controller = controller
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._rng = rng or random.Random()
        self._queues: dict[str, HoldQueue[_Held]] = {}

    async def acquire(self, deployment: LiveDeployment, deadline: float, *, batch: bool = False,
                      heartbeat: Heartbeat | None = None, adapter: str | None = None) -> Lease:
        """A lease on a replica for one request, holding it until `deadline` while none can take it;
        `heartbeat` is awaited at once when held for a wake, then every `heartbeat_s` of waiting (streaming
        callers' SSE comments). Nobody
        overtakes the held: while requests are held, a new one joins the end of the queue."""
        lease = Lease(deployment, batch, deadline, heartbeat, adapter)
        replica = None if self._queues.get(deployment.id) else self._pick(lease, None)
        if replica is not None:
            lease._take(replica)
        else:
            await self._hold(lease, None)
        return lease

    async def reacquire(self, lease: Lease) -> None:
        """Move `lease` off its replica (its connection failed before any response byte) onto another,
        if there is one, under the request's original bounds. If that raises, the lease holds nothing."""
        failed = lease.replica.replica_id
        lease.release()
        replica = self._pick(lease, failed)
        if replica is not None:
            lease._take(replica)
        else:
            await self._hold(lease, failed)

    def _queue(self, deployment: LiveDeployment) -> HoldQueue[_Held]:
        queue = self._queues.get(deployment.id)
        if queue is None:
            queue = self._queues[deployment.id] = HoldQueue()
        return queue

    async def _hold(self, lease: Lease, exclude: str | None) -> None:
        """Hold the request in the deployment's queue until `serve` gives it a replica (one became ready
        or freed a slot); the lease has taken that replica when this returns."""
        deployment = lease.deployment
        self._check_open(deployment)
        if deployment.queued >= deployment.spec.max_queued_requests:
            raise ApiError(503, f"Deployment {deployment.id} has {deployment.queued} requests waiting "
                                "for capacity already; retry later.", code="queue_full", headers={"Retry-After": "5"})
        queue, held = self._queue(deployment), _Held(lease, exclude)
        queue.push(held)
        for_slot = bool(deployment.ready_replicas())
        deployment.queued += 1
        deployment.queued_for_slot += for_slot
        beat_now = lease.heartbeat is not None
        try:
            while True:
                self._serve(deployment)
                if held.placed:
                    return
                self._check_open(deployment)
                if not deployment.ready_replicas():
                    self._controller.wake(deployment)
                    if beat_now and lease.heartbeat is not None:
                        # A stream held for a wake hears at once that it is alive, then every heartbeat_s;
                        # then look again: a replica may have turned ready meanwhile.
                        beat_now = False
                        await lease.heartbeat()
                        continue
                await self._wait(lease)
        except BaseException:
            if held.placed:
                lease.release()  # placed, then cancelled before it could use the replica: give it back
            raise
        finally:
            queue.discard(held)
            deployment.queued -= 1
            deployment.queued_for_slot -= for_slot
            # Only this queue: another may have taken its place since (this one emptied and was dropped
            # by an earlier waiter), and dropping that one would strand the requests held in it.
            if not queue and self._queues.get(deployment.id) is queue:
                del self._queues[deployment.id]

    def _serve(self, deployment: LiveDeployment) -> None:
        def give(held: _Held, replica: LiveReplica) -> None:
            held.lease._take(replica)
            held.placed = True

        self._queue(deployment).serve(lambda held: self._pick(held.lease, held.exclude), give)

    @staticmethod
    def _check_open(deployment: LiveDeployment) -> None:
        if deployment.status in _CLOSED:
            raise ApiError(409 if deployment.status is DeploymentStatus.stopped else 503,
                           f"Deployment {deployment.id} is {deployment.status}"
                           + (f": {deployment.status_reason}" if deployment.status_reason else "."),
                           code="deployment_unavailable")

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

    def _pick(self, lease: Lease, exclude: str | None) -> LiveReplica | None:
        deployment = lease.deployment
        return pick_replica(deployment.ready_replicas(lease.adapter), self._rng, engine_capacity(deployment.spec),
                            lease.batch, exclude)
