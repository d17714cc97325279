"""One replica of a continuous-batching engine, in virtual time: no clock, no sleeping.

A request takes one of `max_seqs` slots (vLLM's `max_num_seqs`, the sim engine's `max_concurrency`) or
waits in the replica's queue. In its slot it first prefills, `ttft_s + prompt_tokens x
prefill_s_per_token` (its first token comes out at the end), then decodes one token per engine step,
and a step takes longer the more sequences decode together: `decode_s_per_token x (1 +
decode_slowdown_per_seq x (running - 1))`. With 20 ms/token and a slowdown of 0.02, 16 sequences
decoding share steps of 20 x 1.3 = 26 ms each.

The sim engine (`engines/sim/timing.py`) is the special case with no per-token prefill and no slowdown:
`ReplicaProfile.from_sim_config` builds it, so a live `sim` replica and this model agree.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from inferstack.engines.sim.config import SimConfig

_EPS = 1e-9


class ReplicaProfile(BaseModel):
    """How fast one replica starts and serves; `inferstack calibrate` measures one (JSON), or the default:
    a sim-like replica (50 ms to first token, 50 tokens/s) with 0.05 ms of prefill per prompt token, 1%
    slower steps per extra sequence and the ~70 s start-up of a GPU replica loading a 7-8B model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    startup_s: float = Field(70.0, ge=0)
    ttft_s: float = Field(0.05, ge=0)
    prefill_s_per_token: float = Field(0.00005, ge=0)
    decode_s_per_token: float = Field(0.02, ge=0)
    decode_slowdown_per_seq: float = Field(0.01, ge=0)

    @classmethod
    def from_sim_config(cls, config: SimConfig) -> ReplicaProfile:
        decode = 0.0 if config.tokens_per_s <= 0 else 1.0 / config.tokens_per_s
        return cls(startup_s=config.startup_delay_s, ttft_s=config.ttft_ms / 1000.0, prefill_s_per_token=0.0,
                   decode_s_per_token=decode, decode_slowdown_per_seq=0.0)

    def prefill_s(self, prompt_tokens: int) -> float:
        return self.ttft_s + prompt_tokens * self.prefill_s_per_token

    def step_s(self, decoding: int) -> float:
        return self.decode_s_per_token * (1.0 + self.decode_slowdown_per_seq * max(0, decoding - 1))


R = TypeVar("R")


@dataclass
class _Sequence(Generic[R]):
    request: R
    prompt_tokens: int
    output_tokens: int
    prefill_done_at: float = math.inf
    remaining: float = 0.0  # decode steps still to run once prefilled


@dataclass
class ReplicaModel(Generic[R]):
    """Sequences move only when `advance(t)` is called, and the caller never skips past
    `next_event_at()`: between two events the batch is constant, so progress is linear."""

    profile: ReplicaProfile
    max_seqs: int
    now: float = 0.0
    waiting: deque[_Sequence[R]] = field(default_factory=deque)
    prefilling: list[_Sequence[R]] = field(default_factory=list)
    decoding: list[_Sequence[R]] = field(default_factory=list)

    @property
    def busy(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def submit(self, request: R, prompt_tokens: int, output_tokens: int, now: float) -> None:
        self.advance(now)
        self.waiting.append(_Sequence(request, prompt_tokens, max(1, output_tokens)))
        self._fill()

    def next_event_at(self) -> float:
        nxt = min((s.prefill_done_at for s in self.prefilling), default=math.inf)
        if self.decoding:
            step = self.profile.step_s(len(self.decoding))
            nxt = min(nxt, self.now + min(s.remaining for s in self.decoding) * step)
        return nxt

    def advance(self, t: float) -> tuple[list[R], list[R]]:
        """Move to time `t`; the requests whose first token came and those that finished, in that order."""
        first, done = [], []
        if t > self.now and self.decoding:
            steps = (t - self.now) / self.profile.step_s(len(self.decoding))
            for s in self.decoding:
                s.remaining -= steps
        self.now = max(self.now, t)
        for s in [s for s in self.decoding if s.remaining <= _EPS]:
            self.decoding.remove(s)
            done.append(s.request)
        for s in [s for s in self.prefilling if s.prefill_done_at <= self.now + _EPS]:
            self.prefilling.remove(s)
            first.append(s.request)
            s.remaining = s.output_tokens - 1
            if s.remaining <= _EPS:
                done.append(s.request)
            else:
                self.decoding.append(s)
        self._fill()
        return first, done

    def _fill(self) -> None:
        while self.waiting and self.busy < self.max_seqs:
            s = self.waiting.popleft()
            s.prefill_done_at = self.now + self.profile.prefill_s(s.prompt_tokens)
            self.prefilling.append(s)
