"""The error shape every caller sees: OpenAI's `{"error": {"message", "type", "param", "code"}}`.

Lives on the lowest floor so the gateway, the file upload and the API raise and write the same errors
without importing the web layer. The API turns an `ApiError` into the caller's shape (`api/errors.py`).
"""

from __future__ import annotations

from typing import Any

import orjson

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
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


def engine_error_body(status: int, body: bytes) -> bytes:
    """An engine's error answer in OpenAI's shape. vLLM answers `{"error": {"message", "type":
    "BadRequestError", "param", "code": 400}}` (older versions `{"object": "error", "message", ...}`):
    the message and param are kept, the type and code become OpenAI's, so a client sees one shape
    whichever side refused the request."""
    error = _engine_error(body)
    if error is not None:
        param = error.get("param")
        return openai_error_body(status, error["message"], param=param if isinstance(param, str) else None)
    return openai_error_body(status, engine_error_message(status, body))


def engine_error_message(status: int, body: bytes) -> str:
    """The message of an engine's error answer, or what it answered when that is not one."""
    error = _engine_error(body)
    if error is not None:
        return str(error["message"])
    text = body.decode("utf-8", "replace").strip()[:500]
    return f"The engine answered {status}" + (f": {text}" if text else ".")


def _engine_error(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) and isinstance(error.get("message"), str) else None
