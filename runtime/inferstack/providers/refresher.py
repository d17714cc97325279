"""The background refresh a cloud provider's exit-code cache stands on (`aws.py`, `kubernetes.py`).

The controller asks every replica's exit code every tick; a provider answers from a cache and asks
this for a refresh: at most one runs at a time, no sooner than `poll_s` after the last began, and none
once stopped (the provider closed or handed over).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from inferstack.clock import Clock


class BackgroundRefresh:
    def __init__(self, clock: Clock, poll_s: float, refresh: Callable[[], Awaitable[None]], name: str) -> None:
        """`refresh` must not raise (a background task: it logs its own failures)."""
        self._clock = clock
        self._poll_s = poll_s
        self._refresh = refresh
        self._name = name
        self._refreshed_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.stopped = False

    def refreshed(self) -> None:
        """A refresh began now (also one called directly): the next is due `poll_s` from now."""
        self._refreshed_at = self._clock.now()

    def schedule(self) -> None:
        """Start a refresh in the background if one is due and none runs. Outside an event loop, nothing."""
        if self.stopped or (self._task is not None and not self._task.done()):
            return
        if self._clock.now() - self._refreshed_at < self._poll_s:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: the caller answers from its cache alone
            return
        self.refreshed()
        self._task = loop.create_task(self._refresh(), name=self._name)

    async def stop(self) -> None:
        """No more refreshes; the one running is cancelled."""
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
