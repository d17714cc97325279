"""Response shaping: the OpenAI objects and SSE chunks vLLM sends, built from a plan. No timing here."""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any

import orjson
from aiohttp import web

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.filler import embedding
from inferstack.engines.sim.parsing import EmbedRequest, Plan
from inferstack.engines.sim.structured import token_logprob

OWNED_BY = "inferstack-sim"
SSE_DONE = b"data: [DONE]\n\n"


def json_response(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def model_list(config: SimConfig, created: int, adapters: dict[str, str]) -> dict[str, Any]:
    """The served names, then each loaded LoRA adapter with its base as `parent`, as vLLM lists them."""
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": OWNED_BY,
            "root": name,
            "parent": None,
            "max_model_len": config.max_model_len,
        }
        for name in config.served_model_names
    ]
    data += [{"id": name, "object": "model", "created": created, "owned_by": OWNED_BY, "root": path,
              "parent": config.served_model_names[0], "max_model_len": None} for name, path in adapters.items()]
    return {"object": "list", "data": data}


def usage(plan: Plan) -> dict[str, int]:
    completion_tokens = plan.completion_tokens
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    }


def embedding_list(request: EmbedRequest, response_id: str, created: int) -> dict[str, Any]:
    data = []
    for i, (seed, _) in enumerate(request.inputs):
        vector = embedding(seed, request.dimensions)
        value: list[float] | str = vector
        if request.encoding == "base64":
            # The official `openai` client asks for base64 by default: little-endian float32.
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"index": i, "object": "embedding", "embedding": value})
    prompt_tokens = request.prompt_tokens
    return {
        "id": response_id,
        "object": "list",
        "created": created,
        "model": request.model,
        "data": data,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


class CompletionShape:
    """The bodies of one generate request: whole (`completion`) or as SSE chunks (`step`, `tail`)."""

    def __init__(self, plan: Plan, chat: bool, response_id: str, created: int) -> None:
        self.plan = plan
        self.chat = chat
        self.id = response_id
        self.created = created
        self.usage = usage(plan)
        self.tool_call_ids = [f"chatcmpl-tool-{uuid.uuid4().hex}" for _ in plan.choices] if plan.tool else []

    def completion(self) -> dict[str, Any]:
        plan = self.plan
        choices = []
        for i, choice in enumerate(plan.choices):
            text = "".join(choice.tokens)
            body: dict[str, Any] = {"index": i}
            if not self.chat:
                body["text"] = text
            elif plan.tool:
                body["message"] = {"role": "assistant", "content": None,
                                   "tool_calls": [self._tool_call(i, text, whole=True)]}
            else:
                body["message"] = {"role": "assistant", "content": text}
            offsets = _offsets(choice.tokens)
            body["logprobs"] = self._logprobs(choice.tokens, offsets)
            body["finish_reason"] = choice.finish_reason
            body["stop_reason"] = choice.stop_reason
            choices.append(body)
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": plan.model,
            "choices": choices,
            "usage": self.usage,
        }

    def _tool_call(self, i: int, arguments: str, whole: bool) -> dict[str, Any]:
        """A whole tool call, or (streamed) its first delta: id, type and name come once, then arguments."""
        return {**({} if whole else {"index": 0}), "id": self.tool_call_ids[i], "type": "function",
                "function": {"name": self.plan.tool, "arguments": arguments}}

    def _logprobs(self, tokens: list[str], offsets: list[int]) -> dict[str, Any] | None:
        top = self.plan.logprobs
        if top is None:
            return None
        return chat_logprobs(tokens, top) if self.chat else completion_logprobs(tokens, offsets, top)

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created,
                "model": self.plan.model,
                "choices": choices,
            }
        )

    def step(self, step: int) -> bytes:
        """The SSE bytes for decoding step `step` (one token for every choice still going)."""
        out: list[bytes] = []
        for i, choice in enumerate(self.plan.choices):
            length = max(len(choice.tokens), 1)
            if step >= length:
                continue  # this choice ended earlier (a stop string)
            token = choice.tokens[step : step + 1]
            piece = "".join(token)
            if self.chat:
                if step == 0:
                    # vLLM's first chat chunk announces the role, with empty content.
                    role = {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None}
                    out.append(self._chunk([role]))
                if self.plan.tool:
                    call = self._tool_call(i, piece, whole=False) if step == 0 else {
                        "index": 0, "function": {"arguments": piece}}
                    delta: dict[str, Any] = {"tool_calls": [call]}
                else:
                    delta = {"content": piece}
                body: dict[str, Any] = {"index": i, "delta": delta}
            else:
                body = {"index": i, "text": piece}
            offset = len("".join(choice.tokens[:step]))
            body["logprobs"] = self._logprobs(token, [offset] if token else [])
            last = step == length - 1
            body["finish_reason"] = choice.finish_reason if last else None
            body["stop_reason"] = choice.stop_reason if last else None
            out.append(self._chunk([body]))
        return b"".join(out)

    def tail(self, include_usage: bool) -> bytes:
        if not include_usage:
            return SSE_DONE
        # The usage chunk has no choices and carries the totals, as with OpenAI and vLLM.
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.plan.model,
            "choices": [],
            "usage": self.usage,
        }
        return sse(payload) + SSE_DONE


def _offsets(tokens: list[str]) -> list[int]:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return offsets


def _alternatives(token: str, top: int) -> list[tuple[str, float]]:
    """The chosen token first (the most likely), then other filler words, less likely each."""
    others = [w for w in (token.strip(), token.upper(), token + ".", " " + token.strip().lower()) if w != token]
    picks = [token, *others][: max(top, 1)]
    picks += [f"{token}#{k}" for k in range(len(picks), max(top, 1))]
    return [(t, token_logprob(token, rank)) for rank, t in enumerate(picks)]


def chat_logprobs(tokens: list[str], top: int) -> dict[str, Any]:
    """OpenAI's chat shape: `{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`."""
    content = []
    for token in tokens:
        ranked = _alternatives(token, top)
        content.append({"token": token, "logprob": ranked[0][1], "bytes": list(token.encode()),
                        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                         for t, lp in ranked[:top]]})
    return {"content": content}


def completion_logprobs(tokens: list[str], offsets: list[int], top: int) -> dict[str, Any]:
    """The legacy completions shape: parallel lists, `top_logprobs` a {token: logprob} map per token."""
    ranked = [_alternatives(token, top) for token in tokens]
    return {"text_offset": offsets, "token_logprobs": [r[0][1] for r in ranked], "tokens": list(tokens),
            "top_logprobs": [dict(r[:top]) for r in ranked] if top else None}
