"""Fixtures of the sim engine's tests: sim servers on real free ports, and official `openai` clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from aiohttp import web
from sim_support import MODEL, StartSim

from inferstack.engines.sim.app import build_app
from inferstack.engines.sim.config import SimConfig


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start sim servers on real free ports; defaults are instant so each test sets only what it needs."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> str:
        settings: dict[str, Any] = {"served_model_names": (MODEL,), "ttft_ms": 0, "tokens_per_s": 0}
        settings.update(overrides)
        runner = web.AppRunner(build_app(SimConfig(**settings)))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., openai.AsyncOpenAI]]:
    made: list[openai.AsyncOpenAI] = []

    def make(base_url: str, api_key: str = "unused") -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
