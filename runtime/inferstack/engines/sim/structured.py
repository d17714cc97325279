"""What a generate request asks of its answer's shape: stop strings, a tool call, JSON output, logprobs.

Pure: a request body's options in, plain data out (or vLLM's 400). The simulator honours them the way
vLLM does, in its own way: stop strings cut the filler, a tool call or a JSON answer is a value built to
satisfy the schema given (its strings are filler words), and logprobs are present and shaped like vLLM's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from inferstack.engines.sim.errors import bad_request

MAX_TOP_LOGPROBS = 20  # vLLM's default --max-logprobs
CHARS_PER_TOKEN = 4  # JSON answers are split into 4-character tokens, the filler's ratio


@dataclass(frozen=True, slots=True)
class Structured:
    """The answer is JSON rather than words: the arguments of a call to `tool`, or (no tool) the content."""

    schema: dict[str, Any] | None  # None: any JSON object (`json_object`)
    tool: str | None = None


def stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise bad_request("`stop` must be a string or a list of strings.", "stop")


def cut_at_stop(tokens: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    """The tokens before the first stop string (which is not part of the output, as in vLLM), and that string.

    ["The", " quick", " model"] with stop " qu" -> (["The"], " qu"); with stop "ick m" -> (["The", " qu"], "ick m").
    """
    text = "".join(tokens)
    found = [(at, stop) for stop in stops if (at := text.find(stop)) >= 0]
    if not found:
        return tokens, None
    cut, stop = min(found, key=lambda hit: hit[0])
    kept: list[str] = []
    position = 0
    for token in tokens:
        if position >= cut:
            break
        kept.append(token[: cut - position])
        position += len(token)
    return kept, stop


def logprobs_wanted(body: dict[str, Any], chat: bool) -> int | None:
    """How many alternatives each token's logprobs list, or None when none are asked for.

    Chat: `logprobs: true` with `top_logprobs` 0..20; completions: `logprobs` 0..20 (an int)."""
    if chat:
        asked = body.get("logprobs")
        if asked is None or asked is False:
            if body.get("top_logprobs") is not None:
                raise bad_request("`top_logprobs` requires `logprobs` to be true.", "top_logprobs")
            return None
        if asked is not True:
            raise bad_request("`logprobs` must be a boolean.", "logprobs")
        top, name = body.get("top_logprobs", 0), "top_logprobs"
    else:
        top, name = body.get("logprobs"), "logprobs"
        if top is None:
            return None
    top = 0 if top is None else top
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise bad_request(f"`{name}` must be an integer from 0 to {MAX_TOP_LOGPROBS}, got {top!r}.", name)
    return top


def structured_answer(body: dict[str, Any]) -> Structured | None:
    """The JSON a chat request asks for through `tools`/`tool_choice` or `response_format`, or None for words."""
    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if tools and choice != "none":
        if choice in (None, "auto", "required"):
            name = next(iter(tools))  # the simulator always decides to call the first tool
        elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
            name = choice["function"]["name"]
            if name not in tools:
                raise bad_request(f"Tool '{name}' has not been passed in `tools`.", "tool_choice")
        else:
            raise bad_request("`tool_choice` must be 'none', 'auto', 'required' or a named function.", "tool_choice")
        return Structured(tools[name], tool=name)
    if choice not in (None, "none", "auto"):
        raise bad_request("`tool_choice` needs `tools`.", "tool_choice")
    return _response_format(body.get("response_format"))


def _tools(tools: object) -> dict[str, dict[str, Any]]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise bad_request("`tools` must be a list of function tools.", "tools")
    found: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}.", "tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise bad_request(f"tools[{i}].function.parameters must be a JSON schema object.", "tools")
        found[function["name"]] = parameters
    return found


def _response_format(value: object) -> Structured | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return Structured(None)
    if kind == "json_schema":
        assert isinstance(value, dict)
        spec = value.get("json_schema")
        schema = spec.get("schema", spec.get("json_schema")) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("`response_format.json_schema.schema` must be a JSON schema object.", "response_format")
        return Structured(schema)
    raise bad_request("`response_format.type` must be 'text', 'json_object' or 'json_schema'.", "response_format")


def json_tokens(structured: Structured, words: list[str]) -> list[str]:
    """The JSON answer as tokens: a value satisfying the schema, with the filler `words` as its strings."""
    schema = structured.schema or {"type": "object", "properties": {"answer": {"type": "string"}}}
    value = _value(schema, schema, _cycle(words), 0)
    text = orjson.dumps(value).decode()
    return [text[i:i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def _cycle(words: list[str]) -> Iterator[str]:
    while True:
        yield from (w.strip() for w in words) if words else ("value",)


def _value(schema: dict[str, Any], root: dict[str, Any], words: Iterator[str], depth: int) -> Any:
    """One value valid against `schema`: the first option of a choice, every property, the least an array
    or a string may hold. Covers what tools and structured-output libraries generate (pydantic's schemas)."""
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), root, words, depth)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if o.get("type") != "null"] or schema.get(key)
        if options:
            return _value({**{k: v for k, v in schema.items() if k != key}, **options[0]}, root, words, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        if depth > 8:
            return {}
        return {name: _value(sub, root, words, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
        return [_value(items, root, words, depth + 1) for _ in range(0 if depth > 8 else count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, next(words))


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise bad_request(f"Cannot resolve the schema reference {ref!r}.", "response_format")
    return node


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 1 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
    if high is not None and value > high:
        value = high - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else float(value)


def _string(schema: dict[str, Any], word: str) -> str:
    text = word
    while len(text) < schema.get("minLength", 0):
        text += " " + word
    return text[: schema["maxLength"]] if "maxLength" in schema else text


def token_logprob(token: str, rank: int = 0) -> float:
    """A deterministic, plausible log-probability: the chosen token's is the highest of its alternatives."""
    return -round(0.05 + (zlib.crc32(token.encode()) % 900) / 1000 + rank * 1.5, 4)
