"""Errors in vLLM's shape: `{"error": {"message", "type", "param", "code"}}` with the HTTP status as code.

Not `inferstack.errors`: the sim imitates vLLM's error bodies (type names such as `BadRequestError`),
which are not the control plane's OpenAI error types.
"""

from __future__ import annotations

import orjson
from aiohttp import web


class SimApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.err_type, self.param)


def error_response(status: int, message: str, err_type: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": err_type, "param": param, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def bad_request(message: str, param: str | None = None) -> SimApiError:
    return SimApiError(400, message, "BadRequestError", param)
