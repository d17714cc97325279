"""One generate request driven through admission, prefill and decoding, answered whole or streamed."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from inferstack.engines.sim.parsing import Plan
from inferstack.engines.sim.responses import CompletionShape, json_response
from inferstack.engines.sim.scheduler import Scheduler


class Generation:
    def __init__(self, scheduler: Scheduler, plan: Plan, chat: bool) -> None:
        self.scheduler = scheduler
        self.plan = plan
        response_id = f"chatcmpl-{uuid.uuid4().hex}" if chat else f"cmpl-{uuid.uuid4().hex}"
        self.shape = CompletionShape(plan, chat, response_id, int(time.time()))
        self.seq = scheduler.sequence(plan.prompt_tokens, plan.steps, len(plan.choices))

    async def complete(self) -> web.Response:
        scheduler, seq = self.scheduler, self.seq
        await scheduler.admit(seq)
        try:
            await scheduler.prefill(seq)
            decode_s = scheduler.timing.decode_s(self.plan.steps)
            if decode_s > 0:
                await asyncio.sleep(decode_s)
            seq.generated = self.shape.usage["completion_tokens"]
            seq.finish_reason = self.plan.engine_finish_reason
        finally:
            scheduler.release(seq)
        return json_response(self.shape.completion())

    async def stream(self, request: web.Request, include_usage: bool) -> web.StreamResponse:
        scheduler, plan, seq, shape = self.scheduler, self.plan, self.seq, self.shape
        timing = scheduler.timing
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        if scheduler.would_wait():
            # Headers go out now, like vLLM's StreamingResponse; the body starts at the first token.
            await response.write(b"")
        await scheduler.admit(seq)
        try:
            await scheduler.prefill(seq)
            if timing.instant_decode:
                # Every token is ready at once: one write, so the instant mode stays fast.
                body = b"".join(shape.step(s) for s in range(plan.steps))
                seq.generated = plan.completion_tokens
                await response.write(body + shape.tail(include_usage))
            else:
                loop = asyncio.get_running_loop()
                first = loop.time()
                for step in range(plan.steps):
                    if step:
                        delay = first + timing.token_due_s(step) - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    # Each write reaches the socket at once (no buffering): a proxy sees every token.
                    await response.write(shape.step(step))
                    seq.generated += sum(1 for c in plan.choices if step < len(c.tokens))
                await response.write(shape.tail(include_usage))
            seq.finish_reason = plan.engine_finish_reason
        except ConnectionResetError:
            # The client went away mid-stream: the slot is freed below and the request counts as aborted.
            return response
        finally:
            scheduler.release(seq)
        await response.write_eof()
        return response
