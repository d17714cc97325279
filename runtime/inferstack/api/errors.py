"""Error responses: every error a user can cause gets a clear message in the shape their client expects.

OpenAI routes answer `{"error": {"message", "type", "param", "code"}}` (built in `inferstack.errors`),
which the official client turns into typed exceptions; native routes answer the same shape (one less
thing to learn); the compatibility routes answer `{"success": false, "message"}` like the platforms
they replace.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from inferstack.errors import ApiError, openai_error_body


def openai_error_response(error: ApiError) -> Response:
    body = openai_error_body(error.status, error.message, error.code, error.param, error.details)
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def compat_error_response(error: ApiError) -> Response:
    return Response(orjson.dumps({"success": False, "message": error.message}), status_code=error.status,
                    media_type="application/json", headers=error.headers)
