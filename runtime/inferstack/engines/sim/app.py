"""The sim engine as an aiohttp application: vLLM's routes, its `--api-key` guard and its error shapes."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.errors import SimApiError, error_response
from inferstack.engines.sim.generation import Generation
from inferstack.engines.sim.lora import LoraAdapters
from inferstack.engines.sim.metrics import CONTENT_TYPE, SimMetrics
from inferstack.engines.sim.parsing import (
    GenerateRequest,
    check_task,
    parse_chat,
    parse_completion,
    parse_embedding,
    read_json,
)
from inferstack.engines.sim.responses import embedding_list, json_response, model_list
from inferstack.engines.sim.scheduler import Scheduler

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_route(handler: Handler) -> Handler:
    """Turn validation errors raised by a handler into OpenAI-shaped responses."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SimApiError as exc:
            return exc.response()

    return wrapped


class _Routes:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = SimMetrics(config.served_model_names[0])
        self.scheduler = Scheduler(config, self.metrics)
        self.created = int(time.time())
        self.loras = LoraAdapters(enabled=config.enable_lora, max_loras=config.max_loras,
                                  max_lora_rank=config.max_lora_rank,
                                  runtime_updates=config.runtime_lora_updating)
        self.loras.start_with(list(config.lora_modules))

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def models(self, request: web.Request) -> web.Response:
        return json_response(model_list(self.config, self.created, self.loras.paths))

    async def load_lora_adapter(self, request: web.Request) -> web.Response:
        return web.Response(text=self.loras.load(await read_json(request), self.config.served_model_names))

    async def unload_lora_adapter(self, request: web.Request) -> web.Response:
        return web.Response(text=self.loras.unload(await read_json(request)))

    async def _generate(self, request: web.Request, parsed: GenerateRequest, chat: bool) -> web.StreamResponse:
        generation = Generation(self.scheduler, parsed.plan, chat=chat)
        if parsed.stream:
            return await generation.stream(request, parsed.include_usage)
        return await generation.complete()

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        check_task(self.config, "generate", "Chat Completions API")
        parsed = parse_chat(self.config, await read_json(request), self.loras.paths)
        return await self._generate(request, parsed, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        check_task(self.config, "generate", "Completions API")
        parsed = parse_completion(self.config, await read_json(request), self.loras.paths)
        return await self._generate(request, parsed, chat=False)

    async def embeddings(self, request: web.Request) -> web.Response:
        check_task(self.config, "embed", "Embeddings API")
        parsed = parse_embedding(self.config, await read_json(request))
        scheduler = self.scheduler
        seq = scheduler.sequence(parsed.prompt_tokens, 0, len(parsed.inputs))
        await scheduler.admit(seq)
        try:
            await scheduler.prefill(seq)  # pooling is a prefill only: ttft is the whole request
            seq.finish_reason = "stop"
        finally:
            scheduler.release(seq)
        return json_response(embedding_list(parsed, f"embd-{uuid.uuid4().hex}", int(time.time())))


def _auth_middleware(api_key: str) -> Any:
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Like vLLM: only /v1 routes are guarded; /health and /metrics stay open for probes and scrapers.
        if request.path.startswith("/v1") and request.method != "OPTIONS":
            supplied = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(supplied, expected):
                return error_response(
                    401,
                    "Invalid or missing API key: send it as 'Authorization: Bearer <key>'.",
                    "AuthenticationError",
                )
        return await handler(request)

    return auth


def build_app(config: SimConfig) -> web.Application:
    """The sim engine as an aiohttp application (startup delay is the runner's business, see `server.serve`).

    Serve it with `handler_cancellation=True` (as `serve` does) so a client that disconnects while
    queued or during a non-streamed request frees its slot at once; streams notice on their next write
    either way.
    """
    middlewares = [_auth_middleware(config.api_key)] if config.api_key else []
    # Large batched prompts must not hit aiohttp's 1 MiB default body limit.
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    routes = _Routes(config)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/metrics", routes.metrics_text)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/v1/chat/completions", _openai_route(routes.chat_completions))
    app.router.add_post("/v1/completions", _openai_route(routes.completions))
    app.router.add_post("/v1/embeddings", _openai_route(routes.embeddings))
    if routes.loras.runtime_updates:  # vLLM registers these only then
        app.router.add_post("/v1/load_lora_adapter", _openai_route(routes.load_lora_adapter))
        app.router.add_post("/v1/unload_lora_adapter", _openai_route(routes.unload_lora_adapter))
    return app
