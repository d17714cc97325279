"""The one rule for text a user gives us that we store, log or pass on: no control characters.

PostgreSQL refuses NUL in text (so an unchecked one was a 500 after part of a change was applied), a
newline in an engine argument or a name splits log lines and command lines, and nothing legitimate in
a name, id, model id or argument needs them. `PlainText(n)` is the pydantic type: bounded in length,
with the rule both checked (with a message naming the character) and published in the JSON schema as
a pattern, so the OpenAPI document and the validation agree.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
PLAIN_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def control_character_problem(value: str) -> str | None:
    """Why `value` is not plain text, or None when it is."""
    found = CONTROL_CHARACTERS.search(value)
    if found is None:
        return None
    return f"must not contain control characters (found U+{ord(found.group()):04X} at position {found.start()})"


def _plain(value: str) -> str:
    problem = control_character_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def PlainText(max_length: int, min_length: int = 0, **field: Any) -> Any:
    """`str` of at most `max_length` characters with no control characters."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, json_schema_extra={
        "pattern": PLAIN_PATTERN}, **field), AfterValidator(_plain)]
