"""The controller's record-keeping: events, status transitions, replica rows, saved state and cost.

Every write the controller makes to the store goes through here, off the event loop (the store is
synchronous SQLAlchemy), so the live fleet and the store change together and every change leaves an
event with the numbers behind it. The writes that follow the live view (events, status, replica rows,
saved state) go through a `WriteBehind`: they never raise, and a database outage delays them, it does
not lose them. Creating a deployment and saving a spec are the API's: those raise, and the API answers
503. After each write reaches the database it calls `changed`, which tells the other control-plane
instances (`controller/sync.py`).

The controller's writes carry the leader's term (`fence`): a deposed leader's are refused
(`fencing.fenced_session`). A user's (create, spec, stop, resume, delete and their events) carry none: any
instance takes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from inferstack.autoscaler.decision import AutoscalerState
from inferstack.clock import Clock
from inferstack.controller.adapter_totals import forget_usage
from inferstack.controller.write_behind import WriteBehind
from inferstack.fleet import LiveDeployment
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus
from inferstack.store import DeploymentRow, ReplicaRow, Store

log = logging.getLogger("inferstack.controller")

T = TypeVar("T")


class Recorder:
    def __init__(self, store: Store, clock: Clock, changed: Callable[[], None] = lambda: None,
                 fence: Callable[[], int | None] = lambda: None) -> None:
        """`fence` is the leader's current term (None: alone by construction, unfenced)."""
        self._store = store
        self._clock = clock
        self._changed = changed
        self._fence = fence
        self._saved_at: dict[str, float] = {}
        self.writes = WriteBehind(store, clock, on_written=changed)

    async def flush(self) -> None:
        """Write what an outage held back (each tick calls this; it is cheap when nothing waits)."""
        await self.writes.flush()

    # --- deployments ---------------------------------------------------------------------------
    async def restore(self, now: float) -> tuple[list[LiveDeployment], list[ReplicaRow]]:
        """Deployments as the previous leader left them, and the replicas it recorded live (keys opened).
        Called by the instance taking the lead, which adopts what still runs and then calls `orphaned`."""
        live_replicas = await _db(self._store.live_replicas)
        restored = []
        for row in await _db(self._store.list_deployments):
            spec, problem = self._store.restorable_spec(row)
            deployment = live_from_row(row, spec, now)
            if problem:
                deployment.status, deployment.status_reason = DeploymentStatus.failed, problem
            restored.append(deployment)
        return restored, live_replicas

    async def deleted_not_removed(self, now: float) -> list[LiveDeployment]:
        """Deployments deleted while no instance led (or before their leader got to them): what runs of
        them and what their provider made is for the instance taking the lead to remove."""
        deleted = []
        for row in await _db(self._store.deleted_not_removed):
            try:
                spec = self._store.restorable_spec(row)[0]
            except ValueError as exc:  # stored by an earlier version: not worth failing the lead over
                log.warning("deleted deployment %s has a spec this version cannot read, left as it is: %s", row.id, exc)
                continue
            deployment = live_from_row(row, spec, now)
            deployment.status = DeploymentStatus.deleted
            deleted.append(deployment)
        return deleted

    async def removed(self, deployment: LiveDeployment) -> None:
        """A deleted deployment's replicas are stopped and its provider objects gone: nothing left to do."""
        await _db(self._store.update_deployment, deployment.id, fence=self._fence(), removed_at=self._clock.now())

    async def orphaned(self, now: float, kept: set[str]) -> None:
        """The replicas recorded live that did not outlive the previous leader (all but `kept`): stopped."""
        await _db(self._store.mark_orphaned_replicas, now, "the control plane that ran it is gone", kept,
                  fence=self._fence())
        self._changed()

    async def create(self, tenant_id: str, spec: DeploymentSpec, now: float) -> LiveDeployment:
        """Raises `store.DuplicateName` when the tenant already has a deployment of that name."""
        live = live_from_row(await _db(self._store.create_deployment, tenant_id, spec, now), spec, now)
        live.status = DeploymentStatus.created  # awake from now, as loaded rows are, until the loop's first pass
        live.row_updated_at = now
        self._changed()
        return live

    async def save_spec(self, deployment: LiveDeployment, spec: DeploymentSpec) -> None:
        """The database first: if it refuses, the live view keeps the spec it has (the caller sets it after)."""
        now = self._clock.now()
        await _db(self._store.save_spec, deployment.id, spec, now)
        deployment.row_updated_at = now
        self._changed()

    async def set_status(self, deployment: LiveDeployment, status: DeploymentStatus, reason: str | None = None,
                         *, by_user: bool = False) -> None:
        """Record a status (and its reason: a failed or stopped one keeps the reason it has unless given
        one; any other has none). A new status leaves an event; a new reason alone is written quietly.

        `by_user`: a user's stop, resume or delete. Any other change (the controller's) leaves a row alone
        that a user stopped or deleted meanwhile on another instance, and its `updated_at` too."""
        before, before_reason = deployment.status, deployment.status_reason
        if reason is not None:
            deployment.status_reason = reason
        elif status is not DeploymentStatus.failed and status is not DeploymentStatus.stopped:
            deployment.status_reason = ""
        if status is before and deployment.status_reason == before_reason:
            return
        deployment.status = status
        values: dict[str, Any] = {"status": status, "status_reason": deployment.status_reason}
        if by_user:  # `updated_at` is the time of the last change a user made: other instances act on it
            deployment.row_updated_at = values["updated_at"] = self._clock.now()
            await self.writes.update_deployment(deployment.id, values, None)
        else:
            await self.writes.update_status_unless_closed(deployment.id, values, self._fence())
        if status is not before:
            await self.event(deployment, "status", f"Status {before} -> {status}"
                             + (f": {deployment.status_reason}" if deployment.status_reason else ""),
                             {"before": before.value, "after": status.value}, by_user=by_user)

    async def forget_adapter_usage(self, deployment: LiveDeployment, adapter: str) -> None:
        await asyncio.to_thread(forget_usage, self._store, deployment.id, adapter)
        deployment.adapter_totals.pop(adapter, None)
        deployment.adapter_stats.pop(adapter, None)

    async def event(self, deployment: LiveDeployment, kind: str, message: str, data: dict[str, Any], *,
                    by_user: bool = False) -> None:
        """`by_user`: the record of a user's action (unfenced), not of the controller's."""
        log.info("%s %s: %s", deployment.id, kind, message)
        await self.writes.add_event(deployment.id, self._clock.now(), kind, message, data,
                                    None if by_user else self._fence())

    # --- replicas ------------------------------------------------------------------------------
    async def add_replica(self, row: ReplicaRow) -> None:
        values = {c.key: getattr(row, c.key) for c in ReplicaRow.__table__.columns if c.key != "id"}
        await self.writes.insert_replica(row.id, {k: v for k, v in values.items() if v is not None}, self._fence())

    async def replica(self, replica_id: str, status: ReplicaStatus, **fields: Any) -> None:
        await self.writes.update_replica(replica_id, {"status": status, **fields}, self._fence())

    # --- cost and memory -----------------------------------------------------------------------
    @staticmethod
    def account(deployment: LiveDeployment, now: float) -> None:
        """Add the replica-seconds since the last call: what the deployment costs (price x hours).
        Two live replicas over a 1.5 s tick add 3 replica-seconds."""
        live = sum(1 for r in deployment.replicas.values() if r.status in ReplicaStatus.live())
        elapsed = max(0.0, now - (deployment.last_replica_seconds_at or now))
        deployment.last_replica_seconds_at = now
        deployment.replica_seconds += live * elapsed

    def save_due(self, deployment: LiveDeployment, now: float, interval_s: float) -> bool:
        return now - self._saved_at.get(deployment.id, 0.0) >= interval_s

    async def save(self, deployment: LiveDeployment) -> None:
        """The autoscaler's memory, the replica count and the cost so far, for the next control plane."""
        self._saved_at[deployment.id] = self._clock.now()
        await self.writes.update_deployment(deployment.id, {
            "autoscaler_state": deployment.autoscaler_state.to_json(),
            "desired_replicas": deployment.wanted(),
            "replica_seconds": deployment.replica_seconds,
            "cost_usd": cost_usd(deployment),
            "last_activity_at": max(deployment.metrics.last_activity_at or 0.0, deployment.awake_since)},
            self._fence())


def cost_usd(deployment: LiveDeployment) -> float:
    """3600 replica-seconds on a 2.5 USD/hour profile cost 2.5 USD."""
    return deployment.replica_seconds / 3600 * deployment.spec.price_per_replica_hour


def usd_per_hour(deployment: LiveDeployment) -> float:
    """What its live replicas cost now: 2 replicas on a 2.5 USD/hour profile cost 5 USD an hour."""
    return deployment.count(*ReplicaStatus.live()) * deployment.spec.price_per_replica_hour


def live_from_row(row: DeploymentRow, spec: DeploymentSpec, now: float) -> LiveDeployment:
    status = DeploymentStatus(row.status)
    if status in DeploymentStatus.managed() and status is not DeploymentStatus.paused:
        status = DeploymentStatus.provisioning  # its replicas went with the previous control plane
    return LiveDeployment(
        id=row.id, tenant_id=row.tenant_id, name=row.name, spec=spec, status=status,
        status_reason=row.status_reason, created_at=row.created_at,
        awake_since=max(row.last_activity_at, now if status is DeploymentStatus.provisioning else 0.0),
        autoscaler_state=AutoscalerState.from_json(row.autoscaler_state or {}),
        replica_seconds=row.replica_seconds, last_replica_seconds_at=now,
        row_updated_at=row.updated_at, wake_seen_at=row.wake_requested_at,
    )


async def _db(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)
