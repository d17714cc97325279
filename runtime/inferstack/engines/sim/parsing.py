"""Request parsing and validation: a JSON body in, a plan of what to answer out, or vLLM's error.

Pure apart from `read_json`: no state, no clock. The checks run in vLLM's order, so the first error a
caller sees is the one vLLM would report.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from inferstack.engines.sim.config import SimConfig, Task
from inferstack.engines.sim.errors import SimApiError, bad_request
from inferstack.engines.sim.filler import EMBEDDING_DIM, filler_tokens
from inferstack.engines.sim.structured import (
    Structured,
    cut_at_stop,
    json_tokens,
    logprobs_wanted,
    stop_strings,
    structured_answer,
)

DEFAULT_MAX_TOKENS = 16


@dataclass(slots=True)
class Choice:
    tokens: list[str]
    finish_reason: str
    stop_reason: str | None = None  # the stop string that ended it


@dataclass(slots=True)
class Plan:
    """What a generate request asks for, after validation."""

    model: str
    prompt_tokens: int
    choices: list[Choice]
    logprobs: int | None = None  # alternatives listed per token; None: no logprobs asked for
    tool: str | None = None  # the function every choice calls (its tokens are the JSON arguments)

    @property
    def steps(self) -> int:
        """Decoding steps: the longest choice's tokens (a choice cut to nothing still sends its finish)."""
        return max(max(len(c.tokens), 1) for c in self.choices)

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

    @property
    def engine_finish_reason(self) -> str:
        """What the engine's metrics count: vLLM's engine ends a tool call with "stop" too."""
        return "length" if self.choices[0].finish_reason == "length" else "stop"


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    plan: Plan
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str
    inputs: list[tuple[str, int]]  # (seed text, tokens) per input
    encoding: Literal["float", "base64"]
    dimensions: int

    @property
    def prompt_tokens(self) -> int:
        return sum(tokens for _, tokens in self.inputs)


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def check_task(config: SimConfig, task: Task, api: str) -> None:
    if config.task != task:
        # vLLM registers only the routes its model supports: others are a 404.
        raise SimApiError(404, f"The model does not support {api}.", "NotFoundError")


def check_model(config: SimConfig, body: dict[str, Any], adapters: Container[str] = ()) -> str:
    """The model a request names: a served name or a loaded LoRA adapter's."""
    model = body.get("model")
    if model is None:
        return config.served_model_names[0]  # vLLM: `model` may be omitted
    if not isinstance(model, str):
        raise bad_request("`model` must be a string.", "model")
    if model not in config.served_model_names and model not in adapters:
        raise SimApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    return model


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise bad_request(f"`{name}` must be an integer >= {minimum}, got {value!r}.", name)
    return int(value)


def _stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    """Return (stream, include_usage), with vLLM's rule that stream_options needs stream=true."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean.", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise bad_request("Stream options can only be defined when `stream=True`.", "stream_options")
    if not isinstance(options, dict):
        raise bad_request("`stream_options` must be an object.", "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad_request("`stream_options.include_usage` must be a boolean.", "stream_options")
    return stream, include_usage


def _chat_prompt_text(messages: object) -> str:
    """Concatenate the text of all messages; reject shapes vLLM would reject."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list of message objects.", "messages")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a string `role`.", "messages")
        content = message.get("content")
        if content is None:
            continue  # e.g. an assistant turn that only carried tool calls
        if isinstance(content, str):
            parts.append(content)
            continue
        if not isinstance(content, list):
            raise bad_request(f"messages[{i}].content must be a string or a list of parts.", "messages")
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                # The sim imitates a text-only model, as vLLM does for a model without a vision tower.
                raise bad_request(
                    f"messages[{i}].content: only text parts are supported by this model.", "messages"
                )
            parts.append(part["text"])
    return "\n".join(parts)


def count_tokens(text: str) -> int:
    # A tokenizer-free estimate: ~4 characters per token, and at least one (BOS-like) token.
    return len(text) // 4 + 1


def _prompt_inputs(value: object, name: str) -> list[tuple[str, int]]:
    """Normalise an OpenAI `prompt`/`input` (str, [str], [int], [[int]]) to (seed text, tokens) pairs."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [(v, count_tokens(v)) for v in value]
        if all(_is_int(v) for v in value):
            return [(orjson.dumps(value).decode(), len(value))]
        if all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
            return [(orjson.dumps(v).decode(), len(v)) for v in value]
    raise bad_request(
        f"`{name}` must be a string, a non-empty list of strings, a list of token ids "
        "or a list of token-id lists.",
        name,
    )


def completion_budget(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> tuple[int, str]:
    """Completion tokens per choice and the finish reason, or vLLM's context-length 400.

    With max_model_len 4096: a 100-token prompt without `max_tokens` gets (16, "stop"); a 4090-token one
    gets the 6 tokens left, (6, "length"); `max_tokens` 50 gets (50, "length")."""
    limit = max_model_len
    if max_tokens is None:
        if prompt_tokens >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt_tokens} input tokens. Please reduce the length of the input messages."
            )
        room = limit - prompt_tokens
        # Without a cap the sim "stops" on its own; if the context runs out first, that is "length".
        return (DEFAULT_MAX_TOKENS, "stop") if room >= DEFAULT_MAX_TOKENS else (room, "length")
    if prompt_tokens + max_tokens > limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
            "the completion). Please reduce the length of the messages or completion."
        )
    return max_tokens, "length"


def _seed(config: SimConfig, model: str, text: str) -> str:
    # An adapter answers other words than its base for the same prompt, as a fine-tune does.
    return text if model in config.served_model_names else f"{model}\n{text}"


def _choice(seed: str, salt: int, budget: tuple[int, str], stops: list[str]) -> Choice:
    """Filler words within the budget, cut at the first stop string (then the finish is "stop")."""
    steps, finish = budget
    tokens, stop = cut_at_stop(filler_tokens(seed, salt, steps), stops)
    return Choice(tokens, "stop" if stop else finish, stop)


def _structured_choice(seed: str, salt: int, structured: Structured, max_tokens: int | None, room: int) -> Choice:
    """The whole JSON answer when it fits `max_tokens` and the context, else cut there ("length"), as vLLM's
    guided decoding does: a truncated answer is not valid JSON, and the finish reason says why."""
    tokens = json_tokens(structured, filler_tokens(seed, salt, 8))
    limit = min(room, max_tokens) if max_tokens is not None else room
    if len(tokens) > limit:
        return Choice(tokens[:limit], "length")
    return Choice(tokens, "tool_calls" if structured.tool else "stop")


def parse_chat(config: SimConfig, body: dict[str, Any], adapters: Container[str] = ()) -> GenerateRequest:
    model = check_model(config, body, adapters)
    text = _chat_prompt_text(body.get("messages"))
    stream, include_usage = _stream_options(body)
    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", 1)
    n = _optional_int(body, "n", 1) or 1
    stops, logprobs, structured = stop_strings(body), logprobs_wanted(body, chat=True), structured_answer(body)
    prompt_tokens = count_tokens(text)
    budget = completion_budget(prompt_tokens, max_tokens, config.max_model_len)
    if structured is None:
        choices = [_choice(_seed(config, model, text), i, budget, stops) for i in range(n)]
    else:
        room = config.max_model_len - prompt_tokens
        choices = [_structured_choice(_seed(config, model, text), i, structured, max_tokens, room) for i in range(n)]
    plan = Plan(model, prompt_tokens, choices, logprobs, structured.tool if structured else None)
    return GenerateRequest(plan, stream, include_usage)


def parse_completion(config: SimConfig, body: dict[str, Any], adapters: Container[str] = ()) -> GenerateRequest:
    model = check_model(config, body, adapters)
    if "prompt" not in body:
        raise bad_request("`prompt` is required.", "prompt")
    prompts = _prompt_inputs(body["prompt"], "prompt")
    stream, include_usage = _stream_options(body)
    max_tokens = _optional_int(body, "max_tokens", 1)
    n = _optional_int(body, "n", 1) or 1
    stops, logprobs = stop_strings(body), logprobs_wanted(body, chat=False)
    # Every prompt is its own sequence for the context check; they share one slot and one schedule.
    budgets = [completion_budget(tokens, max_tokens, config.max_model_len) for _, tokens in prompts]
    choices = [_choice(_seed(config, model, seed), i, budget, stops)
               for (seed, _), budget in zip(prompts, budgets, strict=True) for i in range(n)]
    prompt_tokens = sum(tokens for _, tokens in prompts)
    return GenerateRequest(Plan(model, prompt_tokens, choices, logprobs), stream, include_usage)


def parse_embedding(config: SimConfig, body: dict[str, Any]) -> EmbedRequest:
    model = check_model(config, body)
    if "input" not in body:
        raise bad_request("`input` is required.", "input")
    inputs = _prompt_inputs(body["input"], "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("`encoding_format` must be 'float' or 'base64'.", "encoding_format")
    dimensions = _optional_int(body, "dimensions", 1) or EMBEDDING_DIM
    if dimensions > EMBEDDING_DIM:
        raise bad_request(
            f"`dimensions` must be at most {EMBEDDING_DIM} for this model, got {dimensions}.",
            "dimensions",
        )
    for _, tokens in inputs:
        if tokens > config.max_model_len:
            raise bad_request(
                f"This model's maximum context length is {config.max_model_len} tokens. However, "
                f"your request has {tokens} input tokens. Please reduce the length of the input."
            )
    return EmbedRequest(model, inputs, encoding, dimensions)
