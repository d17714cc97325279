"""The sim engine's LoRA adapter routes answer as vLLM 0.32's do (same paths, statuses, messages), so the
control plane's adapter handling is exercised on the sim as it runs on vLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from inferstack.engines.sim.app import build_app
from inferstack.engines.sim.config import SimConfig
from lora_adapter import write_config


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, Path]]:
    config = SimConfig(served_model_names=("base",), ttft_ms=0, tokens_per_s=0, enable_lora=True,
                       max_lora_rank=16, lora_modules=(f"base:a1={write_config(tmp_path / 'a1')}",),
                       runtime_lora_updating=True)
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as session:
        yield session, tmp_path
    await runner.cleanup()


async def post(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(path, json=body) as answer:
        return answer.status, (await answer.json() if answer.content_type == "application/json"
                               else await answer.text())


async def test_load_and_unload_answer_as_vllm_does(sim: tuple[aiohttp.ClientSession, Path]) -> None:
    session, root = sim
    assert await post(session, "/v1/load_lora_adapter", {"lora_name": "base:a2", "lora_path": str(
        write_config(root / "a2"))}) == (200, "Success: LoRA adapter 'base:a2' added successfully.")
    async with session.get("/v1/models") as listed:
        models = {m["id"]: m for m in (await listed.json())["data"]}
    assert models["base:a1"]["parent"] == models["base:a2"]["parent"] == "base" and models["base"]["parent"] is None

    status, again = await post(session, "/v1/load_lora_adapter", {"lora_name": "base:a2", "lora_path": "/x"})
    assert status == 400 and again["error"]["message"].startswith("The lora adapter 'base:a2' has already been loaded")
    status, missing = await post(session, "/v1/load_lora_adapter", {"lora_name": "m", "lora_path": str(root)})
    assert status == 404 and missing["error"]["message"] == "Loading lora m failed: No adapter found for <path>"
    status, wide = await post(session, "/v1/load_lora_adapter", {"lora_name": "w", "lora_path": str(
        write_config(root / "w", rank=32))})
    assert status == 500 and wide["error"]["message"] == (
        "Call to add_lora method failed: LoRA rank 32 is greater than max_lora_rank 16.")
    status, _ = await post(session, "/v1/load_lora_adapter", {"lora_name": "base", "lora_path": "o/r"})
    assert status == 400

    assert await post(session, "/v1/unload_lora_adapter", {"lora_name": "base:a2"}) == (
        200, "Success: LoRA adapter 'base:a2' removed successfully.")
    status, gone = await post(session, "/v1/unload_lora_adapter", {"lora_name": "base:a2"})
    assert status == 404 and gone["error"]["message"] == "The lora adapter 'base:a2' cannot be found."
    status, _ = await post(session, "/v1/chat/completions", {"model": "base:a2", "messages": [
        {"role": "user", "content": "hi"}]})
    assert status == 404


async def test_without_runtime_updating_the_routes_do_not_exist(tmp_path: Path) -> None:
    runner = web.AppRunner(build_app(SimConfig(served_model_names=("base",), enable_lora=True)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as session:
            status, _ = await post(session, "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": "o/r"})
            assert status == 404
    finally:
        await runner.cleanup()
