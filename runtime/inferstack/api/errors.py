"""Error shapes: every error a user can cause gets a clear message in the shape their client expects.

OpenAI routes answer `{"error": {"message", "type", "param", "code"}}`, which the official client
turns into typed exceptions; native routes answer the same shape (one less thing to learn); the
compatibility routes answer `{"success": false, "message"}` like the platforms they replace.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    """Raised anywhere below a route; the app turns it into the caller's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.details = details


def openai_error_body(status: int, message: str, code: str | None = None, param: str | None = None,
                      details: list[dict[str, str]] | None = None) -> bytes:
    error: dict[str, Any] = {"message": message, "type": ERROR_TYPES.get(status, "api_error"),
                             "param": param, "code": code}
    if details:
        error["details"] = details
    return orjson.dumps({"error": error})


def openai_error_response(error: ApiError) -> Response:
    body = openai_error_body(error.status, error.message, error.code, error.param, error.details)
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def compat_error_response(error: ApiError) -> Response:
    return Response(orjson.dumps({"success": False, "message": error.message}), status_code=error.status,
                    media_type="application/json", headers=error.headers)
