"""The OpenAPI document as the server really answers: FastAPI's, plus the inference routes (served by the
gateway, not by FastAPI routes) and the error responses every operation can give, in the shape it gives
them (OpenAI's error object, or `{"success": false, "message"}` on the compatibility routes)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from inferstack.gateway.entry import INFERENCE_PATHS
from inferstack.plain_text import PLAIN_PATTERN

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
                   "details": {"type": "array", "items": {"type": "object"}}}}}}
COMPAT_ERROR = {"type": "object", "required": ["success", "message"],
                "properties": {"success": {"const": False}, "message": {"type": "string"}}}
# What the edge (api/edge.py) and the routes answer, on any operation: bad key, unknown id, bad input,
# a body too large or too slow, a conflict, no capacity.
ERROR_STATUSES = {"400": "Bad request.", "401": "Missing or invalid API key.", "404": "Not found.",
                  "408": "The body did not arrive in time.", "409": "Conflict with the current state.",
                  "413": "The body is too large.", "422": "Invalid input.", "503": "No capacity now."}
# The request bodies are the OpenAI API's own: only `model` is ours, the rest goes to the engine.
INFERENCE_BODY = {"type": "object", "required": ["model"], "additionalProperties": True,
                  "properties": {"model": {"type": "string", "minLength": 1,
                                           "description": "A deployment id or name."},
                                 "stream": {"type": "boolean"}}}


def _with_errors(operation: dict[str, Any], compat: bool) -> None:
    schema = COMPAT_ERROR if compat else ERROR
    responses = operation.setdefault("responses", {})
    for status, description in ERROR_STATUSES.items():
        responses[status] = {"description": description, "content": {"application/json": {"schema": schema}}}


def _plain_parameters(operation: dict[str, Any]) -> None:
    # The edge refuses a control character in any path or query parameter (api/edge.py): say so.
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        for option in [schema, *schema.get("anyOf", [])]:
            if option.get("type") == "string":
                option.setdefault("pattern", PLAIN_PATTERN)


def _inference_operation(path: str) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if path != "/v1/embeddings":
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {"post": {"tags": ["inference"], "summary": f"OpenAI {path.removeprefix('/v1/')}",
                     "operationId": "inference_" + path.removeprefix("/v1/").replace("/", "_"),
                     "requestBody": {"required": True, "content": {"application/json": {"schema": INFERENCE_BODY}}},
                     "responses": {"200": {"description": "The engine's answer.", "content": content}}}}


def install(app: FastAPI, compat_prefixes: tuple[str, ...]) -> None:
    """Make `app.openapi()` (and /openapi.json) build the complete document, once."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            paths = schema.setdefault("paths", {})
            for path in INFERENCE_PATHS:
                paths[path] = _inference_operation(path)
            for path, operations in paths.items():
                for method, operation in operations.items():
                    if path != "/health" and method in {"get", "post", "put", "patch", "delete"}:
                        _with_errors(operation, path.startswith(compat_prefixes))
                        _plain_parameters(operation)
            schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
            schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
