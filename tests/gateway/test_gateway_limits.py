"""Per-key limits at the gateway's entry, in process: 429 with Retry-After and OpenAI's x-ratelimit headers,
and the place in flight given back whatever happens to the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from gateway_support import FakeReplica, Harness, Waker, eventually, make_deployment

from inferstack.access import KeyLimits, KeyScope
from inferstack.auth import KeyRing
from inferstack.clock import ManualClock
from inferstack.fleet import Fleet
from inferstack.gateway.entry import Gateway
from inferstack.gateway.limits import DEFAULT_COMPLETION_TOKENS, estimate_tokens
from inferstack.server import open_database


@pytest.fixture
async def limited(tmp_path: Path, replica_server: FakeReplica) -> AsyncIterator[Callable[..., object]]:
    """`await limited(**limits)`: a gateway whose caller's key (inference scope) has these limits."""
    async with AsyncExitStack() as stack:
        store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
        stack.callback(store.engine.dispose)

        async def make(**limits: int) -> Harness:
            clock, waker = ManualClock(), Waker()
            tenant, _ = store.create_key("team", clock.now())
            _, key = store.add_key(tenant, clock.now(), KeyScope.inference, None, KeyLimits(**limits))
            deployment = make_deployment()
            deployment.tenant_id = tenant
            fleet = Fleet()
            fleet.add(deployment)
            gateway = Gateway(fleet, KeyRing(store, clock), waker, clock, heartbeat_s=0.05)
            await gateway.start()
            stack.push_async_callback(gateway.close)
            harness = Harness(gateway, deployment, clock, waker, tenant, key)
            harness.add_replica("r1", replica_server.url)
            return harness

        yield make


async def test_requests_per_minute_are_counted_in_headers_then_refused_with_retry_after(limited) -> None:
    harness = await limited(requests_per_minute=2)
    first, second = await harness.send(), await harness.send()
    assert first.status == second.status == 200
    assert first.headers[b"x-ratelimit-limit-requests"] == b"2"
    assert [c.headers[b"x-ratelimit-remaining-requests"] for c in (first, second)] == [b"1", b"0"]
    assert second.headers[b"x-ratelimit-reset-requests"] == b"1m0s"  # two requests' worth: 2 x 30 s

    refused = await harness.send()
    assert refused.status == 429 and refused.headers[b"retry-after"] == b"30"
    assert refused.headers[b"x-ratelimit-remaining-requests"] == b"0"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in error["message"]

    harness.clock.advance(29.9)
    assert (await harness.send()).status == 429
    harness.clock.advance(0.1)
    assert (await harness.send()).status == 200


async def test_tokens_per_minute_count_the_prompt_and_max_tokens(limited) -> None:
    harness = await limited(tokens_per_minute=150)
    ok = await harness.send(max_tokens=100)  # "hi" is 1 token, plus 100
    assert ok.status == 200 and ok.headers[b"x-ratelimit-remaining-tokens"] == b"49"
    refused = await harness.send(max_tokens=100)
    assert refused.status == 429 and "150 tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers[b"retry-after"] == b"21"  # 52 tokens missing at 2.5 a second = 20.8 s
    assert (await harness.send(max_tokens=40)).status == 200  # a smaller request still fits


async def test_a_request_over_the_whole_token_limit_is_refused_without_a_retry_after(limited) -> None:
    harness = await limited(tokens_per_minute=50)
    refused = await harness.send(max_tokens=100)
    assert refused.status == 429 and b"retry-after" not in refused.headers
    assert "more than the key's limit of 50 tokens per minute" in refused.json()["error"]["message"]


async def test_concurrent_requests_beyond_the_limit_are_refused_and_slots_come_back(
        limited, replica_server: FakeReplica) -> None:
    harness = await limited(max_concurrent_requests=2)
    held = [harness.request(hold=True) for _ in range(2)]
    await eventually(lambda: replica_server.requests == 2)
    refused = await harness.send()
    assert refused.status == 429 and refused.headers[b"retry-after"] == b"1"
    assert "2 requests in flight" in refused.json()["error"]["message"]
    assert replica_server.requests == 2  # the refused request never reached the replica

    held[0][1].cancel()  # one caller goes away while its request is at the replica
    await asyncio.gather(held[0][1], return_exceptions=True)
    streaming, task = harness.request(stream=True, max_tokens=1000)
    await eventually(lambda: len(streaming.messages) >= 2)
    streaming.hang_up.set()  # and one hangs up mid-stream
    await task
    replica_server.gate.set()
    await held[1][1]
    calls = await asyncio.gather(*(harness.send() for _ in range(2)))
    assert [c.status for c in calls] == [200, 200]  # every slot was given back


async def test_an_unlimited_key_gets_no_rate_limit_headers(harness: Harness, replica_server: FakeReplica) -> None:
    harness.add_replica("r1", replica_server.url)
    call = await harness.send()
    assert call.status == 200 and not any(name.startswith(b"x-ratelimit") for name in call.headers)


@pytest.mark.parametrize(("request_body", "tokens"), [
    ({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 10}, 110),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}]},
     2 + DEFAULT_COMPLETION_TOKENS),
    ({"prompt": ["abcd", "abcd"], "max_completion_tokens": 5, "max_tokens": 99}, 2 + 5),
    ({"input": ["a" * 40, "b" * 40]}, 20),  # embeddings generate nothing
    ({"prompt": "abc", "max_tokens": "many"}, 1 + DEFAULT_COMPLETION_TOKENS),
])
def test_token_estimates(request_body: dict[str, object], tokens: int) -> None:
    assert estimate_tokens(request_body) == tokens


async def test_a_deployment_at_its_bound_per_replica_answers_429_instead_of_queueing_at_the_engine(
        harness: Harness, replica_server: FakeReplica) -> None:
    deployment = harness.deployment
    deployment.spec = deployment.spec.model_copy(update={"max_requests_per_replica": 2})
    harness.add_replica("r1", replica_server.url)
    held = [harness.request(hold=True) for _ in range(2)]
    await eventually(lambda: replica_server.requests == 2)
    refused = await harness.send()
    assert refused.status == 429 and refused.headers[b"retry-after"] == b"1"
    error = refused.json()["error"]
    assert error["code"] == "deployment_at_capacity" and "at most 2 each" in error["message"]
    assert replica_server.requests == 2 and deployment.queued == 0
    harness.add_replica("r2", replica_server.url)  # a second replica doubles the bound
    assert (await harness.send()).status == 200
    replica_server.gate.set()
    await asyncio.gather(*(task for _, task in held))
    assert (await harness.send()).status == 200
