"""The sim engine as a process: simulated weight loading, serving, and a graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from inferstack.engines.sim.app import build_app
from inferstack.engines.sim.config import SimConfig

# Seconds that SIGTERM waits for in-flight requests (streams included) before cancelling them.
_SHUTDOWN_TIMEOUT_S = 10.0


async def serve(config: SimConfig) -> None:
    """Serve until SIGTERM or SIGINT, opening the port only after the simulated weight loading."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Nothing listens while "loading weights": health checks see connection refused, as with vLLM.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=config.startup_delay_s)
    if stop.is_set():
        return
    runner = web.AppRunner(
        build_app(config),
        access_log=None,  # one log line per request would cost more than serving it
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]  # the bound port, meaningful when --port 0
        print(f"sim engine ready on http://{config.host}:{port}", flush=True)
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish (bounded), then closes.
        await runner.cleanup()
