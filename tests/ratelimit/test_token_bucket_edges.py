"""Token buckets at their edges: refill at rates other than one a second, time counted once, and a
request that needs exactly the whole limit."""

from __future__ import annotations

import pytest

from inferstack.access import KeyLimits
from inferstack.ratelimit import KeyLimiter

T0 = 1_000.0


def test_a_120_per_minute_limit_gives_one_request_back_every_half_second() -> None:
    limiter = KeyLimiter.start(KeyLimits(requests_per_minute=120), T0)
    admitted = [limiter.admit(0, T0) for _ in range(120)]
    assert all(v.allowed and v.retry_after_s == 0.0 and v.reason == "" for v in admitted)  # nothing to wait for
    refused = limiter.admit(0, T0 + 0.25)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.25)
    assert limiter.admit(0, T0 + 0.5).allowed
    assert not limiter.admit(0, T0 + 0.5).allowed


def test_time_between_requests_refills_once() -> None:
    limiter = KeyLimiter.start(KeyLimits(requests_per_minute=60), T0)
    assert all(limiter.admit(0, T0).allowed for _ in range(60))
    assert limiter.admit(0, T0 + 1.0).allowed  # the second since T0 paid for this one
    refused = limiter.admit(0, T0 + 1.5)  # only the half second since then counts now
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)


def test_a_request_that_needs_the_whole_token_limit_passes_on_a_full_bucket() -> None:
    limiter = KeyLimiter.start(KeyLimits(tokens_per_minute=100), T0)
    assert limiter.admit(100, T0).allowed
    refused = limiter.admit(100, T0 + 30)  # half a minute refills half of it
    assert not refused.allowed and refused.retry_after_s == pytest.approx(30.0)


def test_a_token_shortfall_shorter_than_a_second_is_still_refused() -> None:
    limiter = KeyLimiter.start(KeyLimits(tokens_per_minute=600), T0)  # 10 tokens a second
    assert limiter.admit(600, T0).allowed
    refused = limiter.admit(5, T0)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
    assert limiter.admit(5, T0 + 0.5).allowed


def test_each_release_frees_one_slot() -> None:
    limiter = KeyLimiter.start(KeyLimits(max_concurrent_requests=3), T0)
    assert all(limiter.admit(0, T0).allowed for _ in range(3))
    limiter.release()
    assert limiter.admit(0, T0).allowed
    assert not limiter.admit(0, T0).allowed  # one release, one slot
    assert limiter.in_flight == 3
