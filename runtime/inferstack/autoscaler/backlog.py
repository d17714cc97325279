"""Queueing a replica can fix, whether a new replica would come in time to fix it, and what a full replica
serves. Pure.

The latency a client sees includes time held while a deployment wakes and plain decode time; neither
shrinks with more replicas. What more replicas do fix is requests waiting for a slot: held at the
gateway while every ready replica runs its engine's capacity, or waiting in an engine's own queue.
A new replica helps only with a backlog that is still there when it is ready, one start-up from now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Backlog:
    waiting: int  # requests waiting for a slot on a ready replica (gateway-held beyond capacity + engine queues)
    arriving_rps: float
    served_rps: float  # completions per second: what the replicas there now get through
    startup_s: float | None  # the last measured start-up; None before any replica was ready

    def drain_s(self) -> float:
        """Seconds until the backlog is gone at today's rates: 40 waiting, served 12/s, arriving 10/s -> 20 s.
        Never, when arrivals keep up with service."""
        if self.waiting <= 0:
            return 0.0
        spare = self.served_rps - self.arriving_rps
        return math.inf if spare <= 0 else self.waiting / spare

    def outlasts_startup(self) -> bool:
        """A backlog that drains in 20 s, with replicas starting in 70 s, is gone before one could help.
        With no start-up measured yet, assume it helps (the latency target is at stake)."""
        if self.waiting <= 0:
            return False
        return self.startup_s is None or self.drain_s() >= self.startup_s

    def keeping_up(self, ready: int) -> int | None:
        """Replicas that serve the arrivals at the rate the `ready` full replicas serve now: arriving 12/s, one
        full replica completing 10/s -> 2. None before anything was served (no measure of a full replica)."""
        if ready <= 0 or self.served_rps <= 0:
            return None
        return math.ceil(round(self.arriving_rps / (self.served_rps / ready), 9))


def full_rate(completion_rps: float, running: int, capacity: int) -> float | None:
    """Requests per second one replica completes with every slot busy, from what the busy slots complete now
    (Little's law): 30 running complete 4.8/s, so 16 slots complete 4.8 / 30 x 16 = 2.56/s. None without a
    measure (nothing running or completing, or the capacity unknown)."""
    if running <= 0 or completion_rps <= 0 or capacity <= 0:
        return None
    return completion_rps / running * capacity


def replicas_for(in_flight: int, capacity: int) -> int:
    """Replicas that run `in_flight` requests at once: 40 in flight, 16 slots each -> 3."""
    return math.ceil(in_flight / capacity) if capacity > 0 else 0
