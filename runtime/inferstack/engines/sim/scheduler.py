"""Admission, prefill and accounting: the sim's stand-in for vLLM's scheduler.

At most `max_concurrency` sequences hold a slot at once (vLLM's `max_num_seqs`); the rest wait, counted as
waiting. The gauges are computed when scraped, so the hot path does no gauge bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.metrics import SimMetrics
from inferstack.engines.sim.timing import TimingModel


class SequenceState:
    """One request, tracked from arrival until it gives its slot back (for the gauges and KV-cache estimate)."""

    __slots__ = (
        "arrival",
        "choices",
        "finish_reason",
        "first_token_at",
        "generated",
        "prompt_tokens",
        "steps",
    )

    def __init__(self, arrival: float, prompt_tokens: int, steps: int, choices: int) -> None:
        self.arrival = arrival
        self.prompt_tokens = prompt_tokens
        self.steps = steps  # tokens per choice
        self.choices = choices
        self.first_token_at: float | None = None
        self.generated = 0  # tokens produced so far, over all choices
        self.finish_reason: str | None = None  # None until it ends normally: counted as "abort"


class Scheduler:
    def __init__(
        self, config: SimConfig, metrics: SimMetrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.timing = TimingModel.from_config(config)
        self.metrics = metrics
        self._clock = clock
        # KV cache sized for max_concurrency full-length sequences.
        self._kv_capacity = config.max_concurrency * config.max_model_len
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._waiting = 0
        self._running: set[SequenceState] = set()
        metrics.running.set_function(lambda: len(self._running))
        metrics.waiting.set_function(lambda: self._waiting)
        metrics.kv_cache_usage.set_function(self._kv_cache_usage)

    def sequence(self, prompt_tokens: int, steps: int, choices: int) -> SequenceState:
        """A sequence arriving now."""
        return SequenceState(self._clock(), prompt_tokens, steps, choices)

    def _kv_cache_usage(self) -> float:
        now = self._clock()
        used = 0
        for seq in self._running:
            since_first = None if seq.first_token_at is None else now - seq.first_token_at
            used += self.timing.kv_tokens(seq.prompt_tokens, seq.steps, seq.choices, since_first)
        return min(1.0, used / self._kv_capacity)

    def would_wait(self) -> bool:
        """Whether a request admitted now would wait before its first token (queued, prefill or decode)."""
        return self.timing.ttft_s > 0 or not self.timing.instant_decode or self._slots.locked()

    async def admit(self, seq: SequenceState) -> None:
        """Wait for a free slot (counted as waiting meanwhile). Nothing to undo if this raises."""
        if self._slots.locked():
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()  # free: returns without yielding
        self._running.add(seq)
        self.metrics.queue_time.observe(self._clock() - seq.arrival)

    async def prefill(self, seq: SequenceState) -> None:
        if self.timing.ttft_s > 0:
            await asyncio.sleep(self.timing.ttft_s)
        seq.first_token_at = now = self._clock()
        self.metrics.ttft.observe(now - seq.arrival)

    def release(self, seq: SequenceState) -> None:
        self._running.discard(seq)
        self._slots.release()
        m = self.metrics
        reason = seq.finish_reason or "abort"
        m.success[reason].inc()
        if seq.first_token_at is not None:
            m.prompt_tokens.inc(seq.prompt_tokens)
        if seq.generated:
            m.generation_tokens.inc(seq.generated)
        if seq.finish_reason is not None:
            m.e2e.observe(self._clock() - seq.arrival)
