from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from controller_support import FakeReplica

METRICS_PAGE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 1.0
"""


@pytest.fixture
async def fake_replica() -> AsyncIterator[FakeReplica]:
    replica = FakeReplica()

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200 if replica.alive else 503)

    async def models(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return web.json_response({"error": "unauthorised"}, status=401)
        replica.keys_seen.append(auth.removeprefix("Bearer "))
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=METRICS_PAGE)

    async def load_adapter(request: web.Request) -> web.Response:
        replica.loaded.append(await request.json())
        return web.Response(text="Success")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/load_lora_adapter", load_adapter)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    replica.url = f"http://127.0.0.1:{port}"
    try:
        yield replica
    finally:
        await runner.cleanup()
