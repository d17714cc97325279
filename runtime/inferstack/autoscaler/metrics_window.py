"""A per-deployment sliding window of request samples, fed by the gateway and read by the controller.

The gateway calls `arrival(now)` when a request comes in and exactly one `completion(...)` when it
ends (success or failure, streamed or not). The controller calls `observe(...)` once per tick and
hands the `WindowStats` to `autoscaler.decision.decide`. Everything runs on one asyncio thread, so
there are no locks; `arrival` and `completion` are O(1) appends, and all the trimming and sorting
happens in `observe`, off the request path.

Nothing here reads the clock: `now` is always the caller's, in seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SAMPLES = 100_000
"""Samples kept per kind (arrivals, completions). 100k arrivals cover a 60 s window up to ~1,666 rps;
above that the oldest arrivals are evicted and rates are measured over the span the kept samples
cover (still the right rate, over a shorter span), and percentiles over the newest 100k completions.
Memory: ~100k floats + ~100k small tuples, a few MB per deployment at most."""


@dataclass(frozen=True)
class WindowStats:
    """What the window saw. The defaults are "no data", a valid observation (the autoscaler holds)."""

    rps: float = 0.0
    """Arrivals per second over the metrics window (see `MetricsWindow.observe` for a fresh window)."""
    panic_rps: float = 0.0
    """Arrivals per second over the (short) panic window."""
    completion_rps: float = 0.0
    """Completions (successful or not) per second over the metrics window: what the replicas get through."""
    panic_completion_rps: float = 0.0
    """The same over the panic window: while replicas are full, what they get through at most."""
    in_flight: int = 0
    """Requests that arrived and have not completed yet, including ones held while a replica wakes."""
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p50_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    """Latency percentiles over the successful completions in the metrics window; None when none."""
    completed: int = 0
    """Successful completions in the metrics window."""
    failed: int = 0
    """Failed completions in the metrics window (disjoint from `completed`)."""
    last_activity_at: float | None = None
    """The last arrival or completion; None if there was none."""


class MetricsWindow:
    """Arrivals and completions of one deployment, kept for the largest window last asked for.

    >>> w = MetricsWindow()
    >>> for i in range(30):
    ...     w.arrival(100.0 + i * 0.1)   # 30 requests between t=100.0 and t=102.9
    >>> w.observe(103.0, window_s=60, panic_window_s=6).rps   # fresh window: 30 / 3 s, not 30 / 60 s
    10.0
    """

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self._max_samples = max_samples
        self._arrivals: deque[float] = deque()
        # (time, latency_s, ttft_s, ok): plain tuples, the cheapest thing to build on the hot path.
        self._completions: deque[tuple[float, float, float | None, bool]] = deque(maxlen=max_samples)
        self._in_flight = 0
        self._last_activity_at: float | None = None
        # Arrival counts are complete from this time on: the first arrival, raised when the cap evicts
        # a sample or `observe` trims. Rates divide by the span since then when it is shorter.
        self._arrivals_complete_since: float | None = None
        self._completions_complete_since: float | None = None

    # --- the gateway's side (hot path) ---------------------------------------------------------
    def arrival(self, now: float) -> None:
        if self._arrivals_complete_since is None:
            self._arrivals_complete_since = now
        if len(self._arrivals) >= self._max_samples:
            evicted = self._arrivals.popleft()
            self._arrivals_complete_since = max(self._arrivals_complete_since, evicted)
        self._arrivals.append(now)
        self._in_flight += 1
        self._touch(now)

    def completion(self, now: float, latency_s: float, ttft_s: float | None, ok: bool) -> None:
        if self._completions_complete_since is None:
            self._completions_complete_since = now
        elif len(self._completions) == self._max_samples:
            self._completions_complete_since = max(self._completions_complete_since, self._completions[0][0])
        self._completions.append((now, latency_s, ttft_s, ok))  # maxlen evicts the oldest
        # Never below zero: a completion without its arrival must not hide a later request in flight.
        self._in_flight = max(0, self._in_flight - 1)
        self._touch(now)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def last_activity_at(self) -> float | None:
        return self._last_activity_at

    def _touch(self, now: float) -> None:
        if self._last_activity_at is None or now > self._last_activity_at:
            self._last_activity_at = now

    # --- the controller's side (once per tick) -------------------------------------------------
    def observe(self, now: float, window_s: float, panic_window_s: float) -> WindowStats:
        """Stats over the last `window_s` (and `panic_window_s` for `panic_rps`) seconds before `now`.

        A sample at time t is in the window when now - window_s < t <= now. Samples older than the
        larger of the two windows are dropped here, which is what bounds memory between ticks.
        """
        return self.observe_with_samples(now, window_s, panic_window_s)[0]

    def observe_with_samples(self, now: float, window_s: float,
                             panic_window_s: float) -> tuple[WindowStats, list[float], list[float]]:
        """`observe`, with the sorted latencies and times to first token (ms) of the window's successful
        requests: what another instance needs to add this window to its own (`shared_window`)."""
        self._trim(now - max(window_s, panic_window_s))
        cutoff = now - window_s
        recent = [c for c in self._completions if cutoff < c[0] <= now]
        done = [c[0] for c in self._completions]
        # Percentiles over successful requests only: a replica failing fast (502s in 5 ms) must not
        # read as a fast replica and let the autoscaler shrink.
        successes = [c for c in recent if c[3]]
        latencies_ms = sorted(c[1] * 1000.0 for c in successes)
        ttfts_ms = sorted(c[2] * 1000.0 for c in successes if c[2] is not None)
        stats = WindowStats(
            rps=_rate(self._arrivals, self._arrivals_complete_since, now, window_s),
            panic_rps=_rate(self._arrivals, self._arrivals_complete_since, now, panic_window_s),
            completion_rps=_rate(done, self._completions_complete_since, now, window_s),
            panic_completion_rps=_rate(done, self._completions_complete_since, now, panic_window_s),
            in_flight=self._in_flight,
            p50_latency_ms=nearest_rank(latencies_ms, 50),
            p95_latency_ms=nearest_rank(latencies_ms, 95),
            p50_ttft_ms=nearest_rank(ttfts_ms, 50),
            p95_ttft_ms=nearest_rank(ttfts_ms, 95),
            completed=len(successes),
            failed=len(recent) - len(successes),
            last_activity_at=self._last_activity_at,
        )
        return stats, latencies_ms, ttfts_ms

    def _trim(self, cut: float) -> None:
        while self._arrivals and self._arrivals[0] <= cut:
            self._arrivals.popleft()
        while self._completions and self._completions[0][0] <= cut:
            self._completions.popleft()
        # Nothing before `cut` is kept any more: a later, larger window must not count it as zero.
        if self._arrivals_complete_since is not None and self._arrivals_complete_since < cut:
            self._arrivals_complete_since = cut
        if self._completions_complete_since is not None and self._completions_complete_since < cut:
            self._completions_complete_since = cut


def _rate(times: Sequence[float], complete_since: float | None, now: float, window_s: float) -> float:
    """Samples per second in (now - window_s, now], `times` ascending and complete since `complete_since`.

    A window younger than `window_s` divides by its age (at least 1 s, or `window_s` if shorter),
    so a fresh burst is not diluted: 30 arrivals in the first 3 s of a 60 s window is 10 rps, not
    0.5. A window 3 ms old with one arrival is 1 rps (the 1 s floor), not 333.
    """
    if complete_since is None:
        return 0.0
    cutoff = now - window_s
    count = 0
    for t in reversed(times):  # newest first: stops at the window's edge
        if t <= cutoff:
            break
        if t <= now:
            count += 1
    age = now - complete_since
    span = window_s if age >= window_s else max(age, min(1.0, window_s))
    return count / span


def nearest_rank(sorted_values: list[float], percentile: float) -> float | None:
    """The nearest-rank percentile of already sorted values; None for no values.

    20 values, p95: rank ceil(0.95 x 20) = 19, so the 19th smallest. 1 value: that value for any p.
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(round(percentile / 100.0 * len(sorted_values), 9)))
    return sorted_values[rank - 1]
