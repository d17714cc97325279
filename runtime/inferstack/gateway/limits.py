"""Limits at the gateway's entry: admit a request or answer 429, the way OpenAI does. Two bounds: the
key's (requests/min, tokens/min, requests in flight) and the deployment's (requests in flight per ready
replica, `max_requests_per_replica`).

The bookkeeping is `inferstack.ratelimit` (pure, `now` passed in); this module estimates a request's
tokens, keeps one limiter per key, and writes the verdict as HTTP: `Retry-After` and OpenAI's
`x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` headers, on the 429 and on
every admitted response of a limited key.

Tokens are counted at admission, as OpenAI's own gateway does: about one token per 4 characters of the
prompt, plus `max_tokens` (or `max_completion_tokens`; DEFAULT_COMPLETION_TOKENS when the request sets
neither). Batch lines (`Gateway.call`) are not limited here: they have their own slots per replica.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from inferstack.access import KeyGrant
from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment
from inferstack.ratelimit import KeyLimiter, Verdict, openai_duration

Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's completions default for max_tokens
CHARS_PER_TOKEN = 4


class Permit:
    """An admitted request of a limited key: its headers, and its place in flight to give back."""

    __slots__ = ("_headers", "_limiter")

    def __init__(self, limiter: KeyLimiter | None, headers: list[tuple[bytes, bytes]]) -> None:
        self._limiter = limiter
        self._headers = headers

    def stamp(self, send: Send) -> Send:
        """`send`, adding the rate-limit headers to the response's start."""
        if not self._headers:
            return send

        async def stamped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._headers]}
            await send(message)

        return stamped

    def release(self) -> None:
        """Give back the request's place in flight; releasing twice is harmless."""
        if self._limiter is not None:
            self._limiter.release()
            self._limiter = None


UNLIMITED = Permit(None, [])


class RateLimits:
    """One limiter per key, created on the key's first limited request."""

    def __init__(self) -> None:
        self._limiters: dict[str, KeyLimiter] = {}

    def admit(self, grant: KeyGrant, deployment: LiveDeployment, request: dict[str, Any], now: float) -> Permit:
        """A permit for the request, or ApiError 429 with Retry-After (and the x-ratelimit headers when the
        key's limits refuse it)."""
        check_capacity(deployment)
        if grant.limits.unlimited():
            return UNLIMITED
        limiter = self._limiters.get(grant.key_id)
        if limiter is None or limiter.limits != grant.limits:
            limiter = self._limiters[grant.key_id] = KeyLimiter.start(grant.limits, now)
        verdict = limiter.admit(estimate_tokens(request), now)
        headers = rate_limit_headers(verdict)
        if verdict.allowed:
            return Permit(limiter, [(name.encode(), value.encode()) for name, value in headers.items()])
        if not math.isinf(verdict.retry_after_s):
            headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after_s)))
        raise ApiError(429, f"Rate limit reached for this API key: {verdict.reason}.",
                       code="rate_limit_exceeded", headers=headers)


def check_capacity(deployment: LiveDeployment) -> None:
    """The deployment's bound, `max_requests_per_replica` requests in flight per ready replica: beyond it a
    request would only queue at an engine, so it is a 429 at once. While no replica is ready, admission
    holds requests instead (bounded by `max_queued_requests`)."""
    bound = deployment.spec.max_requests_per_replica
    ready = deployment.ready_replicas()
    if bound is None or not ready:
        return
    in_flight = sum(replica.outstanding for replica in ready)
    if in_flight >= bound * len(ready):
        raise ApiError(429, f"Deployment {deployment.id} is at capacity: {in_flight} requests in flight on "
                            f"{len(ready)} replica(s), at most {bound} each; retry shortly.",
                       code="deployment_at_capacity", headers={"Retry-After": "1"})


def rate_limit_headers(verdict: Verdict) -> dict[str, str]:
    headers = {}
    for figure in verdict.figures:
        headers[f"x-ratelimit-limit-{figure.kind}"] = str(figure.limit)
        headers[f"x-ratelimit-remaining-{figure.kind}"] = str(figure.remaining)
        headers[f"x-ratelimit-reset-{figure.kind}"] = openai_duration(figure.reset_s)
    return headers


def estimate_tokens(request: dict[str, Any]) -> int:
    """The tokens a request is counted for: its prompt's characters / 4, plus what it may generate."""
    chars = sum(len(text) for text in _texts(request.get("messages")) + _texts(request.get("prompt"))
                + _texts(request.get("input")))
    prompt = math.ceil(chars / CHARS_PER_TOKEN)
    if "input" in request and "messages" not in request and "prompt" not in request:
        return prompt  # an embedding generates nothing
    completion = request.get("max_completion_tokens", request.get("max_tokens"))
    if not isinstance(completion, int) or isinstance(completion, bool) or completion < 0:
        completion = DEFAULT_COMPLETION_TOKENS
    return prompt + completion


def _texts(value: Any) -> list[str]:
    """Every string in a prompt, messages or input (strings, lists, content parts), in any nesting."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        return [text for key, item in value.items() if key in ("content", "text") for text in _texts(item)]
    return []
