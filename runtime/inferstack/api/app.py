"""The control plane's HTTP surface: one ASGI app.

Inference requests (`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`) go straight to
the gateway, a bare ASGI handler on the hot path; everything else (native REST, files, batches,
compatibility routes, health, metrics, the OpenAPI document) is FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from inferstack.api import (
    adapters_routes,
    batches_routes,
    compat,
    console_routes,
    deployments,
    files_routes,
    history_routes,
    keys_routes,
    metrics_routes,
    openapi,
)
from inferstack.api.deps import Services, caller
from inferstack.api.edge import CONTROL_BODY_LIMITS, admitted
from inferstack.api.errors import compat_error_response, malformed_json, not_json, openai_error_response
from inferstack.db import database_away, is_outage
from inferstack.errors import ApiError
from inferstack.gateway.body import BodyLimits
from inferstack.gateway.entry import INFERENCE_PATHS, Receive, Scope, Send
from inferstack.spec import describe_errors, error_fields


def _error_response(path: str, error: ApiError) -> Response:
    if path.startswith(compat.COMPAT_PREFIXES):
        return compat_error_response(error)
    return openai_error_response(error)


def build_fastapi(services: Services,
                  lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None) -> FastAPI:
    app = FastAPI(title="inferstack", version="0.1.0", lifespan=lifespan,
                  description="Dedicated, autoscaled, OpenAI-compatible LLM inference deployments.")
    app.state.services = services

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _error_response(request.url.path, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        path = request.url.path
        if not_json(error.errors()):
            try:  # FastAPI parses the body before any dependency: who is asking comes first
                await caller(request)
            except ApiError as refused:
                return _error_response(path, refused)
            return _error_response(path, malformed_json(error.errors()))
        if path.startswith(compat.SG_INF_PREFIX):
            return _error_response(path, compat.sg_inf_refusal(error.errors()))
        fields = error_fields(error.errors())
        return _error_response(path, ApiError(422, describe_errors(error.errors()), code="invalid_request",
                                              param=fields[0]["field"] if fields else None, details=fields))

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, error: SQLAlchemyError) -> Response:
        if not is_outage(error):
            raise error  # a statement the database refused is a bug: the server's 500, logged
        return _error_response(request.url.path, database_away())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Starlette's Allow names the first matching route's methods only
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return _error_response(request.url.path, ApiError(error.status_code, str(error.detail), headers=headers))

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(deployments.router)
    app.include_router(history_routes.router)
    app.include_router(adapters_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(compat.router)
    app.include_router(keys_routes.router)
    files_routes.include(app)
    batches_routes.include(app)
    console_routes.mount(app)
    openapi.install(app, compat.COMPAT_PREFIXES)
    return app


def _allowed_methods(request: Request) -> list[str]:
    return [method for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                   for route in request.app.router.routes)]


class ControlPlaneApp:
    """Routes inference POSTs to the gateway and the rest to FastAPI (lifespan included)."""

    def __init__(self, api: FastAPI, gateway: Any, body_limits: BodyLimits = CONTROL_BODY_LIMITS) -> None:
        self.api = api
        self._gateway = gateway
        self._body_limits = body_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
        elif scope["path"] in INFERENCE_PATHS:
            if scope["method"] == "POST":
                await self._gateway(scope, receive, send)
            else:
                error = ApiError(405, f"{scope['path']} answers POST only.", headers={"Allow": "POST"})
                await _error_response(scope["path"], error)(scope, receive, send)
        else:
            try:
                scope, receive = await admitted(scope, receive, self._body_limits)
            except ApiError as error:
                await _error_response(scope["path"], error)(scope, receive, send)
                return
            await self.api(scope, receive, send)


def build_app(services: Services) -> ControlPlaneApp:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.gateway.start()
        await services.controller.start()
        await services.batches.start()
        try:
            yield
        finally:
            await services.batches.stop()
            await services.controller.stop()
            await services.gateway.close()

    limits = BodyLimits(CONTROL_BODY_LIMITS.max_bytes, services.settings.client_timeout_s)
    return ControlPlaneApp(build_fastapi(services, lifespan), services.gateway, limits)
