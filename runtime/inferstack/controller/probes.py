"""What the controller learns from replicas over HTTP: are they healthy, how long are their queues.

`HealthProbe` is the one question the replica lifecycle asks; `Probes` answers it over HTTP and also
collects each ready replica's own queue (vLLM's Prometheus gauges) for the record and `status`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from inferstack.fleet import LiveDeployment, LiveReplica

ENGINE_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")


class HealthProbe(Protocol):
    async def healthy(self, replica: LiveReplica) -> bool: ...


class Probes:
    """One pooled HTTP client (opened in `start`, closed in `close`) for every probe and scrape."""

    def __init__(self, timeout_s: float = 5.0, scrape_timeout_s: float = 1.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._scrape_timeout = aiohttp.ClientTimeout(total=scrape_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def healthy(self, replica: LiveReplica) -> bool:
        """Ready to serve: `/health` answers 200 (the engine is alive) and so does `/v1/models` with the
        replica's key (the model is loaded and the key is the one the gateway will send)."""
        session = self._open()
        try:
            async with session.get(replica.url + "/health") as health:
                if health.status != 200:
                    return False
            async with session.get(replica.url + "/v1/models",
                                   headers={"Authorization": f"Bearer {replica.api_key}"}) as models:
                return models.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def scrape_engines(self, deployment: LiveDeployment) -> None:
        """Read each ready replica's engine queue; a replica that does not answer keeps its last reading."""
        ready = deployment.ready_replicas()
        if ready:
            await asyncio.gather(*(self._scrape(replica) for replica in ready))

    async def _scrape(self, replica: LiveReplica) -> None:
        try:
            async with self._open().get(replica.url + "/metrics", timeout=self._scrape_timeout) as got:
                text = await got.text() if got.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return
        gauges = engine_gauges(text)
        replica.engine_running = gauges.get("vllm:num_requests_running")
        replica.engine_waiting = gauges.get("vllm:num_requests_waiting")

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Probes.start() was not called")
        return self._session


def engine_gauges(text: str) -> dict[str, int]:
    """Sum vLLM's request gauges over their label sets from a Prometheus text page."""
    totals: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ENGINE_GAUGES:
            totals[family.name] = int(sum(sample.value for sample in family.samples))
    return totals


def engine_queues(deployment: LiveDeployment) -> dict[str, int]:
    """The deployment's engine queues summed over its scraped replicas; empty before any scrape."""
    scraped = [r for r in deployment.ready_replicas() if r.engine_running is not None]
    if not scraped:
        return {}
    return {"engine_running": sum(r.engine_running or 0 for r in scraped),
            "engine_waiting": sum(r.engine_waiting or 0 for r in scraped)}
