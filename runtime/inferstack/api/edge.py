"""What a control-API request must pass before any route sees it: plain text in its path and query,
and a small body that arrives in time, read as JSON whatever its declared type.

The path and query checks keep control characters (a NUL from `%00`) away from every route at once:
PostgreSQL refuses NUL in text, which made `/v1/batches/x%00` and `?after=%00` a 500. The body is read
here, within `CONTROL_BODY_LIMITS`, and handed to FastAPI from memory; file uploads stream through
their own limits (`files/limits.py`) and are left alone.

Every control route takes JSON (uploads aside), and the gateway reads a body as JSON whatever its
`Content-Type`: so does the control API. `curl -d '{...}'` sends `application/x-www-form-urlencoded`,
and FastAPI reads a body of any type but JSON as a string ("Input should be a valid dictionary").
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from inferstack.errors import ApiError
from inferstack.gateway.body import BodyLimits, Receive, Scope, read_body, replay
from inferstack.plain_text import control_character_problem

CONTROL_BODY_LIMITS = BodyLimits(max_bytes=2**20, timeout_s=30.0)
UPLOAD_PATHS = frozenset({"/v1/files", "/files"})
JSON_BY_DEFAULT = frozenset({b"", b"application/x-www-form-urlencoded"})
"""Declared body types taken as JSON: none, and curl's `-d` default (no control route reads a form)."""


def check_path_and_query(scope: Scope) -> None:
    """Raise a 404 for a path, and a 422 for a query parameter, that holds a control character."""
    if control_character_problem(scope["path"]):
        raise ApiError(404, f"No such resource: {scope['path']!r}.", code="not_found")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        problem = control_character_problem(name) or control_character_problem(value)
        if problem:
            raise ApiError(422, f"{name}: {problem}", code="invalid_request", param=name)


async def admitted(scope: Scope, receive: Receive,
                   limits: BodyLimits = CONTROL_BODY_LIMITS) -> tuple[Scope, Receive]:
    """Check the request; return the scope and `receive` the app should use (the body in memory, as JSON)."""
    check_path_and_query(scope)
    if scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
        return scope, receive
    body = await read_body(scope, receive, limits)
    return (as_json(scope) if body else scope), replay(body, receive)


def as_json(scope: Scope) -> Scope:
    """The scope with `Content-Type: application/json` when the client declared none, or curl's form default."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    declared = [v for k, v in scope["headers"] if k.lower() == b"content-type"]
    if declared and declared[0].split(b";")[0].strip().lower() not in JSON_BY_DEFAULT:
        return scope
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
