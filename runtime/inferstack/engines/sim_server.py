"""The `sim` engine: a simulated, vLLM-compatible OpenAI server with a timing model.

It speaks the same HTTP surface as `python -m vllm.entrypoints.openai.api_server` (routes, response and
error shapes, SSE framing, Prometheus metric names, `--api-key` guarding `/v1`) so the control plane,
gateway, autoscaler and batch runtime can be developed, load-tested and capacity-planned without a GPU.
The text it returns is deterministic filler: it is never presented as a model.

Timing model: at most `max_concurrency` sequences run at once (the rest wait, like vLLM's
`max_num_seqs`); a running request waits `ttft_ms` before its first token (prefill), then produces
`tokens_per_s` tokens per second (0 means instant). With `--ttft-ms 0 --tokens-per-s 0` it answers at
once, fast enough to benchmark a gateway.

Run it as `python -m inferstack.engines.sim_server --port 8000 --served-model-name my-model`, or in
process with `build_app(SimConfig(...))`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import math
import os
import signal
import struct
import sys
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import orjson
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

Task = Literal["generate", "embed"]

EMBEDDING_DIM = 384
DEFAULT_MAX_TOKENS = 16
OWNED_BY = "inferstack-sim"

# One filler word is one token. Short common words keep the chars/token ratio near real text (~4).
_WORDS: tuple[str, ...] = (
    "the", "quick", "model", "sends", "a", "short", "reply", "about", "load", "and", "time",
    "while", "tokens", "flow", "from", "one", "replica", "to", "many", "clients", "on", "this",
    "simulated", "engine", "with", "steady", "pace", "so", "tests", "can", "measure", "it",
)  # fmt: skip
_WORD_STRIDE = 7  # coprime with len(_WORDS): the cycle visits every word before repeating

# vLLM's own bucket boundaries, so dashboards and the autoscaler read the sim like the real engine.
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

# Seconds that SIGTERM waits for in-flight requests (streams included) before cancelling them.
_SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the sim engine is told; mirrors the vLLM flags it imitates plus the timing model."""

    served_model_names: tuple[str, ...]
    host: str = "0.0.0.0"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)  # a secret: kept out of repr and logs
    ttft_ms: float = 50.0
    tokens_per_s: float = 50.0
    max_concurrency: int = 16
    task: Task = "generate"
    startup_delay_s: float = 0.0
    max_model_len: int = 4096

    def __post_init__(self) -> None:
        names = self.served_model_names
        if isinstance(names, str):
            names = (names,)
        # A list is accepted for convenience; frozen, so it is stored as a tuple.
        object.__setattr__(self, "served_model_names", tuple(names))
        if not self.served_model_names or not all(isinstance(n, str) and n for n in self.served_model_names):
            raise ValueError("served_model_names must hold at least one non-empty name")
        if self.task not in get_args(Task):
            raise ValueError(f"task must be one of {get_args(Task)}, got {self.task!r}")
        for name in ("ttft_ms", "tokens_per_s", "startup_delay_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.api_key == "":
            raise ValueError("api_key must not be empty (leave it unset to disable auth)")


# ---------------------------------------------------------------------------------------------------
# Errors in the OpenAI / vLLM shape


class _ApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param

    def response(self) -> web.Response:
        return _error_response(self.status, self.message, self.err_type, self.param)


def _error_response(status: int, message: str, err_type: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": err_type, "param": param, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _bad_request(message: str, param: str | None = None) -> _ApiError:
    return _ApiError(400, message, "BadRequestError", param)


def _json_response(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


# ---------------------------------------------------------------------------------------------------
# Request parsing and validation (pure functions: no state, no I/O)


async def _read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad_request(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.")
    return body


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise _bad_request(f"`{name}` must be an integer >= {minimum}, got {value!r}.", name)
    return int(value)


def _stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    """Return (stream, include_usage), with vLLM's rule that stream_options needs stream=true."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad_request("`stream` must be a boolean.", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise _bad_request("Stream options can only be defined when `stream=True`.", "stream_options")
    if not isinstance(options, dict):
        raise _bad_request("`stream_options` must be an object.", "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _bad_request("`stream_options.include_usage` must be a boolean.", "stream_options")
    return stream, include_usage


def _chat_prompt_text(messages: object) -> str:
    """Concatenate the text of all messages; reject shapes vLLM would reject."""
    if not isinstance(messages, list) or not messages:
        raise _bad_request("`messages` must be a non-empty list of message objects.", "messages")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _bad_request(f"messages[{i}] must be an object with a string `role`.", "messages")
        content = message.get("content")
        if content is None:
            continue  # e.g. an assistant turn that only carried tool calls
        if isinstance(content, str):
            parts.append(content)
            continue
        if not isinstance(content, list):
            raise _bad_request(f"messages[{i}].content must be a string or a list of parts.", "messages")
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                # The sim imitates a text-only model, as vLLM does for a model without a vision tower.
                raise _bad_request(
                    f"messages[{i}].content: only text parts are supported by this model.", "messages"
                )
            parts.append(part["text"])
    return "\n".join(parts)


def _count_tokens(text: str) -> int:
    # A tokenizer-free estimate: ~4 characters per token, and at least one (BOS-like) token.
    return len(text) // 4 + 1


def _prompt_inputs(value: object, name: str) -> list[tuple[str, int]]:
    """Normalise an OpenAI `prompt`/`input` (str, [str], [int], [[int]]) to (seed text, tokens) pairs."""
    if isinstance(value, str):
        return [(value, _count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [(v, _count_tokens(v)) for v in value]
        if all(_is_int(v) for v in value):
            return [(orjson.dumps(value).decode(), len(value))]
        if all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
            return [(orjson.dumps(v).decode(), len(v)) for v in value]
    raise _bad_request(
        f"`{name}` must be a string, a non-empty list of strings, a list of token ids "
        "or a list of token-id lists.",
        name,
    )


def _filler_tokens(seed_text: str, salt: int, count: int) -> list[str]:
    """Deterministic filler: the same prompt always gets the same words."""
    start = zlib.crc32(seed_text.encode()) + salt * 7919
    n = len(_WORDS)
    tokens = [" " + _WORDS[(start + i * _WORD_STRIDE) % n] for i in range(count)]
    if tokens:
        tokens[0] = tokens[0][1:].capitalize()
    return tokens


def _embedding(seed_text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of the input."""
    digest = hashlib.shake_256(seed_text.encode()).digest(2 * EMBEDDING_DIM)
    raw = struct.unpack(f"<{EMBEDDING_DIM}h", digest)[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


# ---------------------------------------------------------------------------------------------------
# Metrics: vLLM's names and labels, in a registry owned by the app


class _Metrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # vLLM labels every series with model_name (its first served name) and engine (the engine
        # core index); the sim has one core.
        labels = {"model_name": model_name, "engine": "0"}
        names = list(labels)
        r = self.registry
        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", names, registry=r
        ).labels(**labels)
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", names, registry=r
        ).labels(**labels)
        self.kv_cache_usage = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", names, registry=r
        ).labels(**labels)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            names,
            registry=r,
            buckets=_TTFT_BUCKETS,
        ).labels(**labels)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            names,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        ).labels(**labels)
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            names,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        ).labels(**labels)
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*names, "finished_reason"],
            registry=r,
        )
        # Pre-bound children: label lookup is off the hot path.
        self.success = {
            reason: success.labels(**labels, finished_reason=reason) for reason in ("stop", "length", "abort")
        }
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", names, registry=r
        ).labels(**labels)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", names, registry=r
        ).labels(**labels)


# ---------------------------------------------------------------------------------------------------
# The engine: admission, timing and accounting


class _Sequence:
    """One admitted request, tracked while it holds a slot (for the gauges and KV-cache estimate)."""

    __slots__ = (
        "arrival",
        "choices",
        "finish_reason",
        "first_token_at",
        "generated",
        "prompt_tokens",
        "steps",
    )

    def __init__(self, prompt_tokens: int, steps: int, choices: int) -> None:
        self.arrival = time.perf_counter()
        self.prompt_tokens = prompt_tokens
        self.steps = steps  # tokens per choice
        self.choices = choices
        self.first_token_at: float | None = None
        self.generated = 0  # tokens produced so far, over all choices
        self.finish_reason: str | None = None  # None until it ends normally: counted as "abort"


@dataclass(slots=True)
class _Plan:
    """What a generate request asks for, after validation."""

    model: str
    prompt_tokens: int
    steps: int
    finish_reason: str
    texts: list[list[str]]  # one token list per choice


class _Engine:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = _Metrics(config.served_model_names[0])
        self.served = frozenset(config.served_model_names)
        self.created = int(time.time())
        self.ttft_s = config.ttft_ms / 1000.0
        self.tps = config.tokens_per_s
        self.kv_capacity = config.max_concurrency * config.max_model_len
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._waiting = 0
        self._running: set[_Sequence] = set()
        # Gauges are computed when scraped, so the hot path does no gauge bookkeeping.
        self.metrics.running.set_function(lambda: len(self._running))
        self.metrics.waiting.set_function(lambda: self._waiting)
        self.metrics.kv_cache_usage.set_function(self._kv_cache_usage)

    # -- accounting -----------------------------------------------------------------------------

    def _kv_cache_usage(self) -> float:
        # KV cache sized for max_concurrency full-length sequences; a sequence holds its prompt plus
        # the tokens generated so far (estimated from the clock, so non-streamed requests count too).
        now = time.perf_counter()
        used = 0
        for seq in self._running:
            used += seq.prompt_tokens
            if seq.first_token_at is not None:
                steps = seq.steps if self.tps <= 0 else 1 + int((now - seq.first_token_at) * self.tps)
                used += seq.choices * min(seq.steps, steps)
        return min(1.0, used / self.kv_capacity)

    def would_wait(self) -> bool:
        return self.ttft_s > 0 or self.tps > 0 or self._slots.locked()

    async def admit(self, seq: _Sequence) -> None:
        """Wait for a free slot (counted as waiting meanwhile). Nothing to undo if this raises."""
        if self._slots.locked():
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()  # free: returns without yielding
        self._running.add(seq)
        self.metrics.queue_time.observe(time.perf_counter() - seq.arrival)

    async def prefill(self, seq: _Sequence) -> None:
        if self.ttft_s > 0:
            await asyncio.sleep(self.ttft_s)
        seq.first_token_at = now = time.perf_counter()
        self.metrics.ttft.observe(now - seq.arrival)

    def release(self, seq: _Sequence) -> None:
        self._running.discard(seq)
        self._slots.release()
        m = self.metrics
        reason = seq.finish_reason or "abort"
        m.success[reason].inc()
        if seq.first_token_at is not None:
            m.prompt_tokens.inc(seq.prompt_tokens)
        if seq.generated:
            m.generation_tokens.inc(seq.generated)
        if seq.finish_reason is not None:
            m.e2e.observe(time.perf_counter() - seq.arrival)

    # -- validation shared by the routes ----------------------------------------------------------

    def check_task(self, task: Task, api: str) -> None:
        if self.config.task != task:
            # vLLM registers only the routes its model supports: others are a 404.
            raise _ApiError(404, f"The model does not support {api}.", "NotFoundError")

    def check_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            return self.config.served_model_names[0]  # vLLM: `model` may be omitted
        if not isinstance(model, str):
            raise _bad_request("`model` must be a string.", "model")
        if model not in self.served:
            raise _ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        return model

    def budget(self, prompt_tokens: int, max_tokens: int | None) -> tuple[int, str]:
        """Completion tokens per choice and the finish reason, or vLLM's context-length 400."""
        limit = self.config.max_model_len
        if max_tokens is None:
            if prompt_tokens >= limit:
                raise _bad_request(
                    f"This model's maximum context length is {limit} tokens. However, your request has "
                    f"{prompt_tokens} input tokens. Please reduce the length of the input messages."
                )
            room = limit - prompt_tokens
            # Without a cap the sim "stops" on its own; if the context runs out first, that is "length".
            return (DEFAULT_MAX_TOKENS, "stop") if room >= DEFAULT_MAX_TOKENS else (room, "length")
        if prompt_tokens + max_tokens > limit:
            raise _bad_request(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
                "the completion). Please reduce the length of the messages or completion."
            )
        return max_tokens, "length"


# ---------------------------------------------------------------------------------------------------
# Generation: one request, streamed or not


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


_SSE_DONE = b"data: [DONE]\n\n"


class _Generation:
    """Drives one generate request through admission, prefill and decoding."""

    def __init__(self, engine: _Engine, plan: _Plan, chat: bool) -> None:
        self.engine = engine
        self.plan = plan
        self.chat = chat
        self.id = f"chatcmpl-{uuid.uuid4().hex}" if chat else f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        choices = len(plan.texts)
        self.seq = _Sequence(plan.prompt_tokens, plan.steps, choices)
        self.usage = {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.steps * choices,
            "total_tokens": plan.prompt_tokens + plan.steps * choices,
        }

    async def complete(self) -> web.Response:
        engine, plan, seq = self.engine, self.plan, self.seq
        await engine.admit(seq)
        try:
            await engine.prefill(seq)
            if engine.tps > 0 and plan.steps > 1:
                await asyncio.sleep((plan.steps - 1) / engine.tps)
            seq.generated = self.usage["completion_tokens"]
            seq.finish_reason = plan.finish_reason
        finally:
            engine.release(seq)
        if self.chat:
            choices: list[dict[str, Any]] = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": None,
                }
                for i, tokens in enumerate(plan.texts)
            ]
        else:
            choices = [
                {
                    "index": i,
                    "text": "".join(tokens),
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": None,
                }
                for i, tokens in enumerate(plan.texts)
            ]
        return _json_response(
            {
                "id": self.id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": plan.model,
                "choices": choices,
                "usage": self.usage,
            }
        )

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return _sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created,
                "model": self.plan.model,
                "choices": choices,
            }
        )

    def _step(self, step: int) -> bytes:
        """The SSE bytes for decoding step `step` (one token for every choice)."""
        plan = self.plan
        last = step == plan.steps - 1
        finish = plan.finish_reason if last else None
        out: list[bytes] = []
        for i, tokens in enumerate(plan.texts):
            if self.chat:
                if step == 0:
                    # vLLM's first chat chunk announces the role, with empty content.
                    out.append(
                        self._chunk(
                            [
                                {
                                    "index": i,
                                    "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
                choice = {"index": i, "delta": {"content": tokens[step]}}
            else:
                choice = {"index": i, "text": tokens[step]}
            choice["logprobs"] = None
            choice["finish_reason"] = finish
            choice["stop_reason"] = None
            out.append(self._chunk([choice]))
        return b"".join(out)

    def _tail(self, include_usage: bool) -> bytes:
        if not include_usage:
            return _SSE_DONE
        # The usage chunk has no choices and carries the totals, as with OpenAI and vLLM.
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.plan.model,
            "choices": [],
            "usage": self.usage,
        }
        return _sse(payload) + _SSE_DONE

    async def stream(self, request: web.Request, include_usage: bool) -> web.StreamResponse:
        engine, plan, seq = self.engine, self.plan, self.seq
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        if engine.would_wait():
            # Headers go out now, like vLLM's StreamingResponse; the body starts at the first token.
            await response.write(b"")
        per_choice = len(plan.texts)
        await engine.admit(seq)
        try:
            await engine.prefill(seq)
            if engine.tps <= 0:
                # Every token is ready at once: one write, so the instant mode stays fast.
                body = b"".join(self._step(s) for s in range(plan.steps))
                seq.generated = plan.steps * per_choice
                await response.write(body + self._tail(include_usage))
            else:
                loop = asyncio.get_running_loop()
                first = loop.time()
                for step in range(plan.steps):
                    if step:
                        # Absolute schedule: write time does not accumulate as drift.
                        delay = first + step / engine.tps - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    # Each write reaches the socket at once (no buffering): a proxy sees every token.
                    await response.write(self._step(step))
                    seq.generated += per_choice
                await response.write(self._tail(include_usage))
            seq.finish_reason = plan.finish_reason
        except ConnectionResetError:
            # The client went away mid-stream: the slot is freed below and the request counts as aborted.
            return response
        finally:
            engine.release(seq)
        await response.write_eof()
        return response


# ---------------------------------------------------------------------------------------------------
# Routes


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_route(handler: Handler) -> Handler:
    """Turn validation errors raised by a handler into OpenAI-shaped responses."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _ApiError as exc:
            return exc.response()

    return wrapped


class _Routes:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.engine.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def models(self, request: web.Request) -> web.Response:
        engine = self.engine
        data = [
            {
                "id": name,
                "object": "model",
                "created": engine.created,
                "owned_by": OWNED_BY,
                "root": name,
                "parent": None,
                "max_model_len": engine.config.max_model_len,
            }
            for name in engine.config.served_model_names
        ]
        return _json_response({"object": "list", "data": data})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        engine = self.engine
        engine.check_task("generate", "Chat Completions API")
        body = await _read_json(request)
        model = engine.check_model(body)
        text = _chat_prompt_text(body.get("messages"))
        stream, include_usage = _stream_options(body)
        max_tokens = _optional_int(body, "max_completion_tokens", 1)
        if max_tokens is None:
            max_tokens = _optional_int(body, "max_tokens", 1)
        n = _optional_int(body, "n", 1) or 1
        prompt_tokens = _count_tokens(text)
        steps, finish = engine.budget(prompt_tokens, max_tokens)
        texts = [_filler_tokens(text, i, steps) for i in range(n)]
        generation = _Generation(engine, _Plan(model, prompt_tokens, steps, finish, texts), chat=True)
        if stream:
            return await generation.stream(request, include_usage)
        return await generation.complete()

    async def completions(self, request: web.Request) -> web.StreamResponse:
        engine = self.engine
        engine.check_task("generate", "Completions API")
        body = await _read_json(request)
        model = engine.check_model(body)
        if "prompt" not in body:
            raise _bad_request("`prompt` is required.", "prompt")
        prompts = _prompt_inputs(body["prompt"], "prompt")
        stream, include_usage = _stream_options(body)
        max_tokens = _optional_int(body, "max_tokens", 1)
        n = _optional_int(body, "n", 1) or 1
        # Every prompt is its own sequence for the context check; they share one slot and one schedule.
        budgets = [engine.budget(tokens, max_tokens) for _, tokens in prompts]
        steps = min(b[0] for b in budgets)
        finish = "length" if any(b[1] == "length" for b in budgets) else "stop"
        texts = [_filler_tokens(seed, i, steps) for seed, _ in prompts for i in range(n)]
        prompt_tokens = sum(tokens for _, tokens in prompts)
        generation = _Generation(engine, _Plan(model, prompt_tokens, steps, finish, texts), chat=False)
        if stream:
            return await generation.stream(request, include_usage)
        return await generation.complete()

    async def embeddings(self, request: web.Request) -> web.Response:
        engine = self.engine
        engine.check_task("embed", "Embeddings API")
        body = await _read_json(request)
        model = engine.check_model(body)
        if "input" not in body:
            raise _bad_request("`input` is required.", "input")
        inputs = _prompt_inputs(body["input"], "input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _bad_request("`encoding_format` must be 'float' or 'base64'.", "encoding_format")
        dimensions = _optional_int(body, "dimensions", 1) or EMBEDDING_DIM
        if dimensions > EMBEDDING_DIM:
            raise _bad_request(
                f"`dimensions` must be at most {EMBEDDING_DIM} for this model, got {dimensions}.",
                "dimensions",
            )
        for _, tokens in inputs:
            if tokens > engine.config.max_model_len:
                raise _bad_request(
                    f"This model's maximum context length is {engine.config.max_model_len} tokens. However, "
                    f"your request has {tokens} input tokens. Please reduce the length of the input."
                )
        prompt_tokens = sum(tokens for _, tokens in inputs)
        seq = _Sequence(prompt_tokens, 0, len(inputs))
        await engine.admit(seq)
        try:
            await engine.prefill(seq)  # pooling is a prefill only: ttft is the whole request
            seq.finish_reason = "stop"
        finally:
            engine.release(seq)
        data = []
        for i, (seed, _) in enumerate(inputs):
            vector = _embedding(seed, dimensions)
            embedding: list[float] | str = vector
            if encoding == "base64":
                # The official `openai` client asks for base64 by default: little-endian float32.
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"index": i, "object": "embedding", "embedding": embedding})
        return _json_response(
            {
                "id": f"embd-{uuid.uuid4().hex}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        )


def _auth_middleware(api_key: str) -> Any:
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Like vLLM: only /v1 routes are guarded; /health and /metrics stay open for probes and scrapers.
        if request.path.startswith("/v1") and request.method != "OPTIONS":
            supplied = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(supplied, expected):
                return _error_response(
                    401,
                    "Invalid or missing API key: send it as 'Authorization: Bearer <key>'.",
                    "AuthenticationError",
                )
        return await handler(request)

    return auth


def build_app(config: SimConfig) -> web.Application:
    """The sim engine as an aiohttp application (startup delay is the runner's business, see `serve`).

    Serve it with `handler_cancellation=True` (as `serve` does) so a client that disconnects while
    queued or during a non-streamed request frees its slot at once; streams notice on their next write
    either way.
    """
    engine = _Engine(config)
    middlewares = [_auth_middleware(config.api_key)] if config.api_key else []
    # Large batched prompts must not hit aiohttp's 1 MiB default body limit.
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    routes = _Routes(engine)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/v1/chat/completions", _openai_route(routes.chat_completions))
    app.router.add_post("/v1/completions", _openai_route(routes.completions))
    app.router.add_post("/v1/embeddings", _openai_route(routes.embeddings))
    return app


# ---------------------------------------------------------------------------------------------------
# Process entry point


async def serve(config: SimConfig) -> None:
    """Serve until SIGTERM or SIGINT, opening the port only after the simulated weight loading."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Nothing listens while "loading weights": health checks see connection refused, as with vLLM.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=config.startup_delay_s)
    if stop.is_set():
        return
    runner = web.AppRunner(
        build_app(config),
        access_log=None,  # one log line per request would cost more than serving it
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]  # the bound port, meaningful when --port 0
        print(f"sim engine ready on http://{config.host}:{port}", flush=True)
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish (bounded), then closes.
        await runner.cleanup()


def _parse_args(argv: Sequence[str] | None) -> SimConfig:
    parser = argparse.ArgumentParser(
        prog="python -m inferstack.engines.sim_server",
        description="Simulated vLLM-compatible OpenAI server (deterministic filler text, timing model).",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+", required=True, dest="served_model_names")
    # Like vLLM, the key may come from VLLM_API_KEY, which keeps it out of `ps` output.
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY") or None,
                        help="guard /v1 routes with this bearer key (default: $VLLM_API_KEY)")
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="time to first token once running")
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="decode speed; 0 means instant")
    parser.add_argument("--max-concurrency", type=int, default=16, help="sequences running at once")
    parser.add_argument("--task", choices=get_args(Task), default="generate")
    parser.add_argument("--startup-delay-s", type=float, default=0.0, help="simulated weight loading")
    parser.add_argument("--max-model-len", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        return SimConfig(
            served_model_names=tuple(args.served_model_names),
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            ttft_ms=args.ttft_ms,
            tokens_per_s=args.tokens_per_s,
            max_concurrency=args.max_concurrency,
            task=args.task,
            startup_delay_s=args.startup_delay_s,
            max_model_len=args.max_model_len,
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> None:
    config = _parse_args(argv)
    # Process-wide, so only here: drop the `_created` series, which vLLM's scrape output lacks too.
    disable_created_metrics()
    try:
        import uvloop  # installed with uvicorn[standard]; roughly doubles requests/sec
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
