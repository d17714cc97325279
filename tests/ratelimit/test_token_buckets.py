"""The per-key limiter, pure: time-travel tables with `now` passed in, no clock, no I/O."""

from __future__ import annotations

import math

import pytest

from inferstack.access import KeyLimits
from inferstack.ratelimit import KeyLimiter, openai_duration

T0 = 1_000.0


def test_a_minute_limit_allows_its_burst_then_refills_one_per_60th_of_a_minute() -> None:
    limiter = KeyLimiter.start(KeyLimits(requests_per_minute=60), T0)
    assert all(limiter.admit(0, T0).allowed for _ in range(60))
    refused = limiter.admit(0, T0)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1.0)
    assert "60 requests per minute" in refused.reason
    (figure,) = refused.figures
    assert (figure.kind, figure.limit, figure.remaining, figure.reset_s) == ("requests", 60, 0, pytest.approx(60.0))
    assert not limiter.admit(0, T0 + 0.999).allowed
    assert limiter.admit(0, T0 + 1.0).allowed  # 1 s later one request's worth is back
    assert limiter.in_flight == 61  # the refusals are not in flight


def test_a_refusal_takes_nothing_from_any_bucket() -> None:
    limiter = KeyLimiter.start(KeyLimits(requests_per_minute=10, tokens_per_minute=100), T0)
    assert limiter.admit(90, T0).allowed
    refused = limiter.admit(20, T0)  # tokens short: the request bucket must not pay for it
    assert not refused.allowed and "100 tokens per minute" in refused.reason
    assert refused.retry_after_s == pytest.approx(10 / (100 / 60))  # 10 tokens missing at 1.67 a second = 6 s
    figures = {f.kind: f.remaining for f in refused.figures}
    assert figures == {"requests": 9, "tokens": 10}
    assert limiter.admit(10, T0).allowed


def test_a_request_larger_than_the_token_limit_can_never_pass() -> None:
    limiter = KeyLimiter.start(KeyLimits(tokens_per_minute=100), T0)
    refused = limiter.admit(101, T0 + 3600)
    assert not refused.allowed and math.isinf(refused.retry_after_s) and "about 101 tokens" in refused.reason


def test_concurrency_counts_requests_in_flight_until_released() -> None:
    limiter = KeyLimiter.start(KeyLimits(max_concurrent_requests=2), T0)
    assert limiter.admit(0, T0).allowed and limiter.admit(0, T0).allowed
    refused = limiter.admit(0, T0 + 100)  # time does not free a slot; only a release does
    assert not refused.allowed and refused.retry_after_s == 1.0 and refused.figures == ()
    limiter.release()
    assert limiter.admit(0, T0 + 100).allowed


def test_an_idle_bucket_refills_to_its_capacity_and_no_further() -> None:
    limiter = KeyLimiter.start(KeyLimits(requests_per_minute=6), T0)
    for _ in range(6):
        limiter.admit(0, T0)
    assert limiter.admit(0, T0 + 3600).figures[0].remaining == 5  # full (6) after an idle hour, then one taken
    assert limiter.figures()[0].reset_s == pytest.approx(10.0)


@pytest.mark.parametrize(("seconds", "text"), [(0.0, "0ms"), (0.0201, "21ms"), (1.0, "1s"), (59.2, "1m0s"),
                                               (360, "6m0s"), (3723, "1h2m3s")])
def test_reset_times_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text
