"""Response shaping: the OpenAI objects and SSE chunks vLLM sends, built from a plan. No timing here."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from aiohttp import web

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.filler import embedding
from inferstack.engines.sim.parsing import EmbedRequest, Plan

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
    completion_tokens = plan.steps * len(plan.texts)
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

    def completion(self) -> dict[str, Any]:
        plan = self.plan
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
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": plan.model,
            "choices": choices,
            "usage": self.usage,
        }

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
