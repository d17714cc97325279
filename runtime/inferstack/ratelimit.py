"""Per-key rate limits as pure bookkeeping: token buckets for requests and tokens per minute, and a count
of requests in flight. Every call takes `now`; nothing here reads a clock or does I/O (the gateway's
`gateway/limits.py` feeds it and writes the answers as HTTP).

A bucket of a 60-per-minute limit holds 60 and refills 1 a second: a burst of 60 passes, the 61st waits
1 s, and after an idle minute the bucket is full again. That is OpenAI's behaviour too (limits are
enforced over shorter spans than the minute they are quoted in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from inferstack.access import KeyLimits


@dataclass
class TokenBucket:
    capacity: float
    per_s: float
    level: float
    at: float

    @classmethod
    def per_minute(cls, limit: int, now: float) -> TokenBucket:
        return cls(capacity=float(limit), per_s=limit / 60.0, level=float(limit), at=now)

    def refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.capacity, self.level + (now - self.at) * self.per_s)
            self.at = now

    def wait_s(self, amount: float) -> float:
        """How long until `amount` can be taken (0: now); infinite if it exceeds the capacity."""
        if amount > self.capacity:
            return math.inf
        missing = amount - self.level
        # Refill is computed from float timestamps (~1e-7 s apart at today's epoch): ignore that dust.
        return missing / self.per_s if missing > 1e-6 else 0.0

    def take(self, amount: float) -> None:
        self.level -= amount

    def reset_s(self) -> float:
        """How long until the bucket is full again (OpenAI's `x-ratelimit-reset-*`)."""
        return (self.capacity - self.level) / self.per_s


@dataclass(frozen=True)
class Figure:
    """One limit as OpenAI's `x-ratelimit-*-{kind}` headers report it."""

    kind: str  # "requests" or "tokens"
    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    figures: tuple[Figure, ...]
    retry_after_s: float = 0.0  # when refused: how long until it would pass (inf: never, at these limits)
    reason: str = ""


@dataclass
class KeyLimiter:
    """One key's limits and their state."""

    limits: KeyLimits
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    in_flight: int = 0

    @classmethod
    def start(cls, limits: KeyLimits, now: float) -> KeyLimiter:
        return cls(limits=limits,
                   requests=TokenBucket.per_minute(limits.requests_per_minute, now)
                   if limits.requests_per_minute else None,
                   tokens=TokenBucket.per_minute(limits.tokens_per_minute, now) if limits.tokens_per_minute else None)

    def admit(self, tokens: int, now: float) -> Verdict:
        """Take one request of `tokens` if every limit allows it (and count it in flight), else refuse it
        taking nothing, saying which limit and how long until it would pass."""
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
        refusal = self._refusal(tokens)
        if refusal is None:
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(tokens)
            self.in_flight += 1
            return Verdict(True, self.figures())
        reason, wait = refusal
        return Verdict(False, self.figures(), wait, reason)

    def release(self) -> None:
        self.in_flight -= 1

    def figures(self) -> tuple[Figure, ...]:
        return tuple(Figure(kind, int(bucket.capacity), max(0, math.floor(bucket.level)), bucket.reset_s())
                     for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)) if bucket is not None)

    def _refusal(self, tokens: int) -> tuple[str, float] | None:
        limits = self.limits
        if limits.max_concurrent_requests is not None and self.in_flight >= limits.max_concurrent_requests:
            # A slot frees when a request ends, which nothing here can foresee: ask for a retry in a second.
            return f"{self.in_flight} requests in flight, the key's limit is {limits.max_concurrent_requests}", 1.0
        if self.requests is not None and (wait := self.requests.wait_s(1)) > 0:
            return f"the key's limit is {limits.requests_per_minute} requests per minute", wait
        if self.tokens is not None and (wait := self.tokens.wait_s(tokens)) > 0:
            if math.isinf(wait):
                return (f"the request needs about {tokens} tokens, more than the key's limit of "
                        f"{limits.tokens_per_minute} tokens per minute"), wait
            return f"the key's limit is {limits.tokens_per_minute} tokens per minute", wait
        return None


def openai_duration(seconds: float) -> str:
    """Seconds as OpenAI's reset headers write them: '20ms', '1s', '6m0s', '1h2m3s'."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
