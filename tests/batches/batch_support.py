"""Helpers of the in-process Batch API tests: a fake gateway that answers like a chat deployment, input
files and batches made as the API would make them, and result-file readers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson

from inferstack.api.deps import Services
from inferstack.batches.repository import new_batch_id
from inferstack.batches.runner import BatchRunner, RetryPolicy
from inferstack.batches.tables import BatchRow
from inferstack.clock import Clock, SystemClock
from inferstack.db import add
from inferstack.files import repository as file_repo
from inferstack.files.blobs import BlobStore, write_stream
from inferstack.files.tables import FileRow
from inferstack.store import Store

CHAT = "/v1/chat/completions"


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    content = f"echo: {body['messages'][-1]['content']}"
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@dataclass
class FakeGateway:
    """Answers chat requests for the models each tenant owns. `script(body) -> status` can make a line
    fail; `gate` (when set) holds every request until it opens; `calls` counts what was sent."""

    models: dict[str, set[str]] = field(default_factory=dict)
    script: Callable[[dict[str, Any]], int] | None = None
    gate: asyncio.Event | None = None
    delay_s: float = 0.0
    calls: list[str] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    priorities: set[str] = field(default_factory=set)

    def resolves(self, tenant_id: str, model: str) -> bool:
        return model in self.models.get(tenant_id, set())

    async def call(self, tenant_id: str, path: str, body: dict[str, Any], *,
                   priority: str = "batch") -> tuple[int, bytes]:
        self.priorities.add(priority)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self.calls.append(body["messages"][-1]["content"])
            if not self.resolves(tenant_id, body["model"]):
                return 404, orjson.dumps({"error": {"message": "no such model", "type": "not_found_error",
                                                    "param": "model", "code": "model_not_found"}})
            status = self.script(body) if self.script else 200
            if status != 200:
                return status, orjson.dumps({"error": {"message": f"scripted {status}", "type": "api_error",
                                                       "param": None, "code": None}})
            return 200, orjson.dumps(chat_completion(body))
        finally:
            self.in_flight -= 1


def request_line(custom_id: str, model: str = "chat", content: str | None = None, url: str = CHAT) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                         "body": {"model": model, "messages": [{"role": "user", "content": content or custom_id}]}})


def jsonl(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


async def _chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def make_batch(store: Store, blobs: BlobStore, data: bytes, *, tenant: str = "alice", endpoint: str = CHAT,
                     now: float | None = None) -> str:
    """An input file and a new batch on it, as the API would create them."""
    now = time.time() if now is None else now
    file_id = file_repo.new_file_id()
    size = await write_stream(blobs, f"files/{file_id}", _chunks(data))
    add(store, FileRow(id=file_id, tenant_id=tenant, filename="in.jsonl", purpose="batch", bytes=size,
                       lines=data.count(b"\n"), blob_key=f"files/{file_id}", created_at=now))
    batch_id = new_batch_id()
    add(store, BatchRow(id=batch_id, tenant_id=tenant, endpoint=endpoint, input_file_id=file_id,
                        completion_window="24h", status="validating", user_metadata=None,
                        created_at=now, expires_at=now + 86_400, total=0, completed=0, failed=0))
    return batch_id


def read_file(store: Store, blobs: BlobStore, tenant: str, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    row = file_repo.get_file(store, tenant, file_id)
    assert row is not None
    return parse_jsonl(b"".join(blobs.iter_chunks(row.blob_key)))


FAST_RETRY = RetryPolicy(attempts=3, base_s=0.001, max_s=0.001)


def make_runner(store: Store, blobs: BlobStore, gateway: FakeGateway, clock: Clock | None = None,
                **kwargs: Any) -> BatchRunner:
    options: dict[str, Any] = {"concurrency": 4, "poll_s": 0.05, "check_s": 0.05, "retry": FAST_RETRY} | kwargs
    return BatchRunner(store, blobs, gateway, clock or SystemClock(), **options)


@dataclass
class Api:
    """The FastAPI app in process, an official AsyncOpenAI client per tenant, and the parts behind."""

    services: Services
    gateway: FakeGateway
    clients: dict[str, openai.AsyncOpenAI]
    http: dict[str, httpx.AsyncClient]


async def eventually(condition: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    """Await until `condition()` (sync or async) is truthy; the bound is only a safety net."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)
