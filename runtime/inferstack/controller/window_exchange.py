"""Metrics that add up across control-plane instances: followers publish, the leader gathers.

Every `PUBLISH_S` a follower writes a row saying it is alive (`ALIVE`) and, for each deployment its
gateway saw traffic for, its window
(`autoscaler/shared_window.WindowShare`) into `instance_windows`, one row per (instance,
deployment). The leader reads the rows at the same pace and hands each deployment the windows
published in the last `FRESH_S` by instances other than itself (`LiveDeployment.peer_windows`);
`autoscaler/observe.py` adds them to the leader's own. An instance that died stops counting after
FRESH_S.

The leader publishes in turn what its autoscaler last saw of each deployment (`MergedWindow`, under the
instance id `MERGED`), and every instance, the leader included, shows that one published copy in
`status` (`LiveDeployment.merged_window`): the same numbers wherever a user asks. Each round also adds
the LoRA adapters' usage counted here to the stored totals (`controller/adapter_totals.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Float, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from inferstack.autoscaler.shared_window import MergedWindow, WindowShare, share
from inferstack.clock import Clock
from inferstack.controller.adapter_totals import add_usage, give_back, stored_totals, take_counted
from inferstack.db import Base
from inferstack.fencing import fenced_session
from inferstack.fleet import AdapterStats, Fleet
from inferstack.store import Store

log = logging.getLogger("inferstack.windows")

PUBLISH_S = 1.0
FRESH_S = 3.0
"""A published window older than this is from an instance that stopped (or a stale moment): ignored."""


class InstanceWindowRow(Base):
    __tablename__ = "instance_windows"
    instance_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    published_at: Mapped[float] = mapped_column(Float)
    window: Mapped[dict[str, Any]] = mapped_column(JSON)


def publish(store: Store, instance_id: str, now: float, windows: dict[str, dict[str, Any]],
            fence: int | None = None) -> None:
    """Replace the instance's rows; `fence`: the leader's term, for the leader's merged rows."""
    with fenced_session(store, fence) as s:
        s.execute(delete(InstanceWindowRow).where(InstanceWindowRow.instance_id == instance_id))
        s.add_all(InstanceWindowRow(instance_id=instance_id, deployment_id=deployment_id, published_at=now,
                                    window=window) for deployment_id, window in windows.items())


ALIVE = "*"
"""The deployment id of the row every instance publishes each round, traffic or not: it is alive."""
MERGED = "*merged"
"""The instance id of the rows the leader publishes its merged windows under (no instance's own id)."""


def live_peers(store: Store, instance_id: str, now: float) -> int:
    """Other instances that published in the last FRESH_S: one of them will lead if this one goes."""
    with store.session() as s:
        return len(list(s.scalars(select(InstanceWindowRow.instance_id).where(
            InstanceWindowRow.instance_id != instance_id, InstanceWindowRow.deployment_id == ALIVE,
            InstanceWindowRow.published_at > now - FRESH_S))))


def fresh_windows(store: Store, instance_id: str, now: float) -> dict[str, list[WindowShare]]:
    """Windows other instances published in the last FRESH_S, by deployment."""
    with store.session() as s:
        rows = s.scalars(select(InstanceWindowRow).where(InstanceWindowRow.instance_id.not_in([instance_id, MERGED]),
                                                         InstanceWindowRow.deployment_id != ALIVE,
                                                         InstanceWindowRow.published_at > now - FRESH_S))
        by_deployment: dict[str, list[WindowShare]] = defaultdict(list)
        for row in rows:
            by_deployment[row.deployment_id].append(WindowShare.from_json(row.window))
        return by_deployment


def merged_windows(store: Store) -> dict[str, MergedWindow]:
    """The leader's last published merged window of each deployment."""
    with store.session() as s:
        rows = s.scalars(select(InstanceWindowRow).where(InstanceWindowRow.instance_id == MERGED))
        return {row.deployment_id: MergedWindow.from_json(row.window) for row in rows}


class WindowExchange:
    def __init__(self, store: Store, fleet: Fleet, clock: Clock, instance_id: str,
                 fence: Callable[[], int | None] = lambda: None) -> None:
        """`fence`: the leader's current term, on the merged windows it publishes."""
        self._store = store
        self._fence = fence
        self._fleet = fleet
        self._clock = clock
        self._instance_id = instance_id
        self._task: asyncio.Task[None] | None = None

    async def start(self, leading: Callable[[], bool]) -> None:
        self._task = asyncio.create_task(self._run(leading), name="window-exchange")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, leading: Callable[[], bool]) -> None:
        while True:
            try:
                await self.exchange(leading())
            except Exception:  # the next round retries; the leader decides on what it has meanwhile
                log.exception("metrics window exchange failed")
            await self._clock.sleep(PUBLISH_S)

    async def _sum_adapter_usage(self) -> None:
        counted = take_counted(self._fleet)
        try:
            totals = await asyncio.to_thread(self._add_and_read, counted)
        except BaseException:
            give_back(self._fleet, counted)
            raise
        for deployment in self._fleet.all():
            deployment.adapter_totals = totals.get(deployment.id, {})

    def _add_and_read(self, counted: dict[tuple[str, str], AdapterStats]) -> dict[str, dict[str, AdapterStats]]:
        if counted:
            add_usage(self._store, counted)
        return stored_totals(self._store)

    async def peers_alive(self) -> bool:
        return await asyncio.to_thread(live_peers, self._store, self._instance_id, self._clock.now()) > 0

    async def exchange(self, leading: bool) -> None:
        await self._sum_adapter_usage()
        now = self._clock.now()
        if leading:
            peers = await asyncio.to_thread(fresh_windows, self._store, self._instance_id, now)
            for deployment in self._fleet.all():
                deployment.peer_windows = peers.get(deployment.id, [])
            observed = {d.id: d.observed.to_json() for d in self._fleet.all() if d.observed is not None}
            await asyncio.to_thread(publish, self._store, MERGED, now, observed, self._fence())
            for deployment in self._fleet.all():  # shown as published: as every other instance reads it
                deployment.merged_window = (MergedWindow.from_json(observed[deployment.id])
                                            if deployment.id in observed else None)
            return
        windows: dict[str, dict[str, Any]] = {ALIVE: {}}
        for deployment in self._fleet.all():
            metrics = deployment.metrics
            if metrics.last_activity_at is None and not metrics.in_flight:
                continue  # never saw a request here: nothing to add
            spec = deployment.spec
            stats, latencies, ttfts = metrics.observe_with_samples(now, spec.metrics_window_s, spec.panic_window_s)
            windows[deployment.id] = share(stats, latencies, ttfts).to_json()
        await asyncio.to_thread(publish, self._store, self._instance_id, now, windows)
        merged = await asyncio.to_thread(merged_windows, self._store)
        for deployment in self._fleet.all():
            deployment.merged_window = merged.get(deployment.id)
