"""This control-plane instance's role: it follows, or it leads and runs the controller loop.

Every instance serves the API and the gateway on a fleet kept by `FleetSync`. One instance at a time
leads (`Leadership`): it alone runs the `ControllerLoop` (reconcile, scaling, the replica lifecycle).
Every `ELECTION_POLL_S` a follower tries to take the lead, and the leader checks it still holds it;
on losing it the leader stops its loop (and the replicas it started) before anything else happens.

The bound on a failover, measured in tests/e2e/test_several_instances.py: the dead leader's lock is
released when its database session ends (at once on a kill -9: the kernel closes its socket), and
the next follower's poll takes it, so a new leader runs within ELECTION_POLL_S plus its restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from inferstack.controller.leadership import ELECTION_POLL_S, Leadership
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.sync import FleetSync
from inferstack.controller.window_exchange import WindowExchange
from inferstack.fleet import LiveDeployment

log = logging.getLogger("inferstack.instance")


class Instance:
    def __init__(self, loop: ControllerLoop, leadership: Leadership, sync: FleetSync, windows: WindowExchange, *,
                 poll_s: float = ELECTION_POLL_S) -> None:
        self._loop = loop
        self._leadership = leadership
        self._sync = sync
        self._windows = windows
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    async def start(self) -> None:
        """Try for the lead once before serving (a lone instance leads from its first request on)."""
        await self._sync.start(lambda: self.leading)
        if await self._leadership.try_lead():
            await self._elected()
        await self._windows.start(lambda: self.leading)
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """A graceful stop (SIGTERM): the loop stops first, then the lead is given up for the next instance.
        When another instance is alive, the replicas that can outlive this process are handed over."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._windows.stop()
        if self.leading:
            # Another live instance leads next: replicas that can outlive this process stay for it.
            hand_over = await self._windows.peers_alive()
            async with self._sync.lock:
                await self._loop.stop(hand_over=hand_over)
                self.leading = False
        await self._leadership.resign()
        await self._sync.stop()

    def wake(self, deployment: LiveDeployment) -> None:
        """A request here waits for a replica: the loop wakes the deployment, here or on the leader."""
        if self.leading:
            self._loop.wake(deployment)
        else:
            self._sync.request_wake(deployment)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                if not self.leading and await self._leadership.try_lead():
                    await self._elected()
                elif self.leading and await self._leadership.still_leading() is False:
                    await self._deposed()
            except Exception:  # the database may be away for a moment: try again next poll
                log.exception("leader election failed")

    async def _elected(self) -> None:
        log.info("leading (epoch %s)", self._leadership.epoch)
        async with self._sync.lock:
            await self._loop.start()
            self.leading = True
        self._sync.announce()

    async def _deposed(self) -> None:
        log.warning("no longer leading (epoch %s): stopping the controller", self._leadership.epoch)
        async with self._sync.lock:
            # Another instance leads now and may have adopted the replicas already: leave it those that
            # can outlive this process (cloud ones); this process's own children go with the loop.
            await self._loop.stop(hand_over=True)
            self.leading = False
        await self._leadership.resign()
