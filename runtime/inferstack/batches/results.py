"""Result lines, in OpenAI's batch output format. Pure: ids are random, nothing else varies.

    {"id": "batch_req_...", "custom_id": "...", "response": {"status_code": 200, "request_id": "...",
     "body": {...}}, "error": null}

A request the deployment answered (2xx or not) carries its response; a line that never got an answer
(the batch was cancelled or expired first) has `response: null` and an `error` with a code.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson


def _hex() -> str:
    return uuid.uuid4().hex[:24]


def response_line(custom_id: str, status_code: int, body: bytes) -> bytes:
    # Parsed and re-serialised rather than embedded: a replica's pretty-printed body (or a trailing
    # newline) would otherwise split one result over several lines of the JSONL file.
    parsed: Any
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = body.decode("utf-8", "replace")
    return orjson.dumps({
        "id": f"batch_req_{_hex()}", "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": f"req_{_hex()}", "body": parsed},
        "error": None,
    }) + b"\n"


def error_line(custom_id: str, code: str, message: str) -> bytes:
    return orjson.dumps({
        "id": f"batch_req_{_hex()}", "custom_id": custom_id, "response": None,
        "error": {"code": code, "message": message},
    }) + b"\n"


def is_success(status_code: int) -> bool:
    return 200 <= status_code < 300


def is_transient(status_code: int) -> bool:
    """Worth sending again: rate limited, or the deployment could not answer right now."""
    return status_code == 429 or status_code >= 500
