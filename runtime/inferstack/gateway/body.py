"""Reading a request body within limits: at most so many bytes, within so many seconds.

Both faces buffer whole bodies (the gateway to parse `model`, the control API through FastAPI), so
both read through `read_body`: a body over the limit is refused at its Content-Length, or at the first
chunk past the limit, without reading further; a client that sends its body slower than the deadline
gets a 408 instead of holding a connection and a buffer for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from inferstack.errors import ApiError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout_s: float


def declared_length(scope: Scope) -> int | None:
    """The Content-Length the client announced, if any (the server has checked its syntax)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def too_large(limits: BodyLimits) -> ApiError:
    return ApiError(413, f"The request body is larger than the limit of {limits.max_bytes} bytes.",
                    code="request_too_large")


async def read_body(scope: Scope, receive: Receive, limits: BodyLimits) -> bytes:
    """The whole body, or an ApiError: 413 past `max_bytes`, 408 past `timeout_s`, 400 if the client left."""
    length = declared_length(scope)
    if length is not None and length > limits.max_bytes:
        raise too_large(limits)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ApiError(400, "The client closed the connection before the body ended.")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_bytes:
                    raise too_large(limits)
                parts.append(chunk)
                if not message.get("more_body"):
                    return b"".join(parts)
    except TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {limits.timeout_s:g} s.",
                       code="request_timeout") from None


async def paced(chunks: AsyncIterator[bytes], timeout_s: float) -> AsyncIterator[bytes]:
    """`chunks` as they come, or a 408 when none comes for `timeout_s`: for bodies streamed on (file
    uploads), whose whole length may rightly take minutes, but whose sender must not stall."""
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(408, f"No part of the request body arrived for {timeout_s:g} s.",
                           code="request_timeout") from None
        yield chunk


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the already read body once, then listens to the client again
    (for its disconnect)."""
    delivered = False

    async def again() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
