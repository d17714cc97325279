"""Input-file validation: every line checked before any is sent, errors reported per line.

Pure: the only outside knowledge is `resolves(model)`, passed in, which says whether `model` names
one of the tenant's deployments. Memory stays bounded by the upload's 50,000-line limit
(`files/limits.py`): a 16-byte digest and a line number per custom_id, one boolean per distinct
model, at most MAX_REPORTED_ERRORS errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

# The body field each endpoint cannot do without (as OpenAI's own API requires).
ENDPOINTS: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}
# A file of 50,000 bad lines would make a 10 MB batch object; the first thousand tell the story.
MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class LineError:
    code: str
    line: int | None
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LineRequest:
    line: int
    custom_id: str
    model: str
    body: dict[str, Any]


def is_blank(raw: bytes) -> bool:
    return not raw.strip()


def parse_line(raw: bytes, line: int, endpoint: str) -> LineRequest | LineError:
    """One input line, checked on its own: JSON object, custom_id, method, url, body, model."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return LineError("invalid_json_line", line, f"Line {line} is not valid JSON: {error}.")
    if not isinstance(item, dict):
        return LineError("invalid_json_line", line, f"Line {line} must be a JSON object.")
    custom_id = item.get("custom_id")
    if custom_id is None:
        return LineError("missing_required_parameter", line, f"Line {line} has no custom_id.", "custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineError("invalid_type", line, f"Line {line}: custom_id must be a non-empty string.", "custom_id")
    method = item.get("method")
    if method != "POST":
        return LineError("invalid_method", line, f"Line {line}: method must be 'POST', not {method!r}.", "method")
    url = item.get("url")
    if url != endpoint:
        return LineError("invalid_url", line,
                         f"Line {line}: url {url!r} does not match the batch's endpoint {endpoint!r}.", "url")
    body = item.get("body")
    if not isinstance(body, dict):
        return LineError("missing_required_parameter", line, f"Line {line}: body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return LineError("missing_required_parameter", line,
                         f"Line {line}: body.model must name a deployment (its id or name).", "body.model")
    required = ENDPOINTS[endpoint]
    if required not in body:
        return LineError("missing_required_parameter", line,
                         f"Line {line}: body.{required} is required for {endpoint}.", f"body.{required}")
    if body.get("stream"):
        return LineError("invalid_value", line, f"Line {line}: batch requests cannot stream.", "body.stream")
    return LineRequest(line, custom_id, model, body)


class FileCheck:
    """Feed it every line of a file in order; then `errors` lists what is wrong, per line."""

    def __init__(self, endpoint: str, resolves: Callable[[str], bool]) -> None:
        self._endpoint = endpoint
        self._resolves = resolves
        self._known_models: dict[str, bool] = {}
        self._first_line_of: dict[bytes, int] = {}  # custom_id digest -> the line that used it first
        self._error_count = 0
        self.errors: list[LineError] = []
        self.requests = 0

    def feed(self, raw: bytes, line: int) -> None:
        if is_blank(raw):
            return
        self.requests += 1
        parsed = parse_line(raw, line, self._endpoint)
        if isinstance(parsed, LineError):
            self._report(parsed)
            return
        digest = hashlib.blake2b(parsed.custom_id.encode(), digest_size=16).digest()
        first = self._first_line_of.setdefault(digest, line)
        if first != line:
            self._report(LineError("duplicate_custom_id", line,
                                   f"Line {line}: custom_id {parsed.custom_id!r} is already used on line {first}.",
                                   "custom_id"))
        known = self._known_models.get(parsed.model)
        if known is None:
            known = self._known_models[parsed.model] = self._resolves(parsed.model)
        if not known:
            self._report(LineError("model_not_found", line,
                                   f"Line {line}: model {parsed.model!r} is not one of your deployments.",
                                   "body.model"))

    def _report(self, error: LineError) -> None:
        self._error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def finish(self) -> list[LineError]:
        """All errors, including the file-level ones (empty file, errors beyond the reported ones)."""
        errors = list(self.errors)
        if self.requests == 0:
            errors.append(LineError("empty_file", None, "The input file has no requests."))
        hidden = self._error_count - len(self.errors)
        if hidden:
            errors.append(LineError("too_many_errors", None,
                                    f"{hidden} more lines have errors; fix the ones above and check again."))
        return errors
