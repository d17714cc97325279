"""A deadline on request headers, which uvicorn does not have.

uvicorn arms its keep-alive timer only after a response, and disarms it at the first byte of the next
request: a client that opens a connection and sends its headers a byte at a time holds the connection
(and its buffers) for as long as it likes. This protocol closes a connection whose request headers are
not complete within the deadline, counted from the connection or from the request's first byte. The
body then has its own deadline (`gateway/body.read_body`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inferstack.settings import Settings


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_deadline(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections whose headers take longer than `timeout_s`."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s})


@functools.cache
def _worker_timeout_s() -> float:
    return Settings.from_env().client_timeout_s


class WorkerHeaderDeadlineProtocol(_HeaderDeadlineProtocol):
    """For `serve --workers N`: uvicorn starts each worker fresh and can hand it a protocol only by
    import path, so each worker reads the deadline from its own environment, once."""

    @property  # type: ignore[override]
    def header_timeout_s(self) -> float:
        return _worker_timeout_s()
