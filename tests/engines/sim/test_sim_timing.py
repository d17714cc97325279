"""The sim engine's timing model and admission, with the numbers they produce today.

Today's model is deliberately simple: the time to first token is one constant whatever the prompt length,
every running sequence decodes at the same rate whatever the batch size, and beyond `max_concurrency`
sequences wait for a slot.
"""

from __future__ import annotations

import asyncio

import pytest

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.errors import SimApiError
from inferstack.engines.sim.metrics import SimMetrics
from inferstack.engines.sim.parsing import completion_budget
from inferstack.engines.sim.scheduler import Scheduler
from inferstack.engines.sim.timing import TimingModel

MODEL = "sim-model"
LABELS = {"model_name": MODEL, "engine": "0"}


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(**overrides: object) -> SimConfig:
    settings: dict[str, object] = {"served_model_names": (MODEL,), "ttft_ms": 0, "tokens_per_s": 20}
    settings.update(overrides)
    return SimConfig(**settings)  # type: ignore[arg-type]


def sample(metrics: SimMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, LABELS)


def test_time_to_first_token_is_the_configured_constant() -> None:
    timing = TimingModel.from_config(config(ttft_ms=50))
    assert timing.ttft_s == 0.05


@pytest.mark.parametrize(
    ("tokens_per_s", "steps", "decode_s"),
    [
        (20, 50, 2.45),  # (50 - 1) / 20: the first token comes with prefill
        (20, 1, 0.0),
        (50, 16, 0.3),
        (0, 50, 0.0),  # instant
    ],
)
def test_decode_takes_one_token_interval_per_token_after_the_first(
    tokens_per_s: float, steps: int, decode_s: float
) -> None:
    assert TimingModel(ttft_s=0.05, tokens_per_s=tokens_per_s).decode_s(steps) == pytest.approx(decode_s)


def test_streamed_tokens_follow_an_absolute_schedule() -> None:
    timing = TimingModel(ttft_s=0.05, tokens_per_s=20)
    assert [timing.token_due_s(step) for step in range(5)] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert not timing.instant_decode
    instant = TimingModel(ttft_s=0.0, tokens_per_s=0)
    assert instant.instant_decode
    assert instant.token_due_s(7) == 0.0


def test_tokens_decoded_grow_with_time_up_to_the_budget() -> None:
    timing = TimingModel(ttft_s=0.05, tokens_per_s=20)
    assert timing.tokens_decoded(10, 0.0) == 1
    assert timing.tokens_decoded(10, 0.25) == 6  # 1 + floor(0.25 * 20)
    assert timing.tokens_decoded(10, 60.0) == 10
    assert TimingModel(ttft_s=0.0, tokens_per_s=0).tokens_decoded(10, 0.0) == 10


def test_kv_tokens_count_the_prompt_and_every_choice_so_far() -> None:
    timing = TimingModel(ttft_s=0.05, tokens_per_s=20)
    assert timing.kv_tokens(prompt_tokens=100, steps=10, choices=2, since_first_token_s=None) == 100
    assert timing.kv_tokens(prompt_tokens=100, steps=10, choices=2, since_first_token_s=0.25) == 112
    assert timing.kv_tokens(prompt_tokens=100, steps=10, choices=2, since_first_token_s=60.0) == 120


@pytest.mark.parametrize(
    ("prompt_tokens", "max_tokens", "budget"),
    [
        (100, None, (16, "stop")),  # the sim stops on its own after 16 tokens
        (4090, None, (6, "length")),  # the context runs out first
        (100, 50, (50, "length")),
        (4000, 96, (96, "length")),  # exactly the context
    ],
)
def test_completion_budget(prompt_tokens: int, max_tokens: int | None, budget: tuple[int, str]) -> None:
    assert completion_budget(prompt_tokens, max_tokens, max_model_len=4096) == budget


@pytest.mark.parametrize(("prompt_tokens", "max_tokens"), [(4096, None), (4000, 97)])
def test_completion_budget_rejects_what_does_not_fit_the_context(prompt_tokens: int, max_tokens: int | None) -> None:
    with pytest.raises(SimApiError) as raised:
        completion_budget(prompt_tokens, max_tokens, max_model_len=4096)
    assert raised.value.status == 400
    assert "maximum context length is 4096 tokens" in raised.value.message


async def test_the_sequence_limit_queues_the_rest() -> None:
    clock = FakeClock()
    metrics = SimMetrics(MODEL)
    scheduler = Scheduler(config(max_concurrency=2), metrics, clock=clock)
    first, second, third = (scheduler.sequence(10, 4, 1) for _ in range(3))
    await scheduler.admit(first)
    await scheduler.admit(second)
    assert scheduler.would_wait()  # tokens_per_s 20: a stream always waits for its tokens
    queued = asyncio.create_task(scheduler.admit(third))
    await asyncio.sleep(0)
    assert not queued.done()
    assert sample(metrics, "vllm:num_requests_running") == 2
    assert sample(metrics, "vllm:num_requests_waiting") == 1

    clock.now += 1.5
    first.finish_reason = "stop"
    scheduler.release(first)
    await queued
    assert sample(metrics, "vllm:num_requests_running") == 2
    assert sample(metrics, "vllm:num_requests_waiting") == 0
    assert sample(metrics, "vllm:request_queue_time_seconds_sum") == pytest.approx(1.5)  # 0 + 0 + 1.5
    assert sample(metrics, "vllm:request_queue_time_seconds_count") == 3


async def test_an_instant_engine_with_free_slots_does_not_make_a_stream_wait() -> None:
    scheduler = Scheduler(config(max_concurrency=1, tokens_per_s=0), SimMetrics(MODEL), clock=FakeClock())
    assert not scheduler.would_wait()
    seq = scheduler.sequence(10, 4, 1)
    await scheduler.admit(seq)
    assert scheduler.would_wait()  # the only slot is taken


async def test_kv_cache_usage_follows_the_clock() -> None:
    clock = FakeClock(now=1.0)
    metrics = SimMetrics(MODEL)
    # Capacity: 2 sequences * 100 tokens = 200 entries.
    scheduler = Scheduler(config(max_concurrency=2, max_model_len=100), metrics, clock=clock)
    seq = scheduler.sequence(prompt_tokens=50, steps=10, choices=2)
    await scheduler.admit(seq)
    assert sample(metrics, "vllm:kv_cache_usage_perc") == pytest.approx(50 / 200)
    await scheduler.prefill(seq)  # ttft 0: the first token at once, at t = 1.0
    clock.now = 1.25
    assert sample(metrics, "vllm:kv_cache_usage_perc") == pytest.approx((50 + 2 * 6) / 200)
    seq.finish_reason = "length"
    scheduler.release(seq)
    assert sample(metrics, "vllm:kv_cache_usage_perc") == 0.0
    assert sample(metrics, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(0.25)
