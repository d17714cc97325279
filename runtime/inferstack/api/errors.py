"""Error responses: every error a user can cause gets a clear message in the shape their client expects.

OpenAI routes answer `{"error": {"message", "type", "param", "code"}}` (built in `inferstack.errors`),
which the official client turns into typed exceptions; native routes answer the same shape (one less
thing to learn); the compatibility routes answer `{"success": false, "message"}` like the platforms
they replace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from inferstack.errors import ApiError, openai_error_body


def openai_error_response(error: ApiError) -> Response:
    body = openai_error_body(error.status, error.message, error.code, error.param, error.details)
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def compat_error_response(error: ApiError) -> Response:
    return Response(orjson.dumps({"success": False, "message": error.message}), status_code=error.status,
                    media_type="application/json", headers=error.headers)


def not_json(errors: Sequence[Mapping[str, Any]]) -> bool:
    return any(e["type"] == "json_invalid" for e in errors)


def malformed_json(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """A body that is not JSON, said so with where it broke (pydantic's own text is "357: JSON decode error")."""
    error = next(e for e in errors if e["type"] == "json_invalid")
    at = next((p for p in error["loc"] if isinstance(p, int)), None)
    why = (error.get("ctx") or {}).get("error", "")
    where = f" at character {at}" if at is not None else ""
    return ApiError(400, f"The request body is not valid JSON: {why or 'it cannot be parsed'}{where}.",
                    code="invalid_json")
