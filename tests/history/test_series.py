"""Downsampling, pure: buckets, what each value keeps, retention, and which tier a window reads."""

from __future__ import annotations

import pytest

from inferstack.history.series import (
    MAX_POINTS,
    MAX_WINDOW_S,
    TIERS,
    BadWindow,
    Sample,
    bucket_start,
    fold,
    oldest_kept,
    parse_window,
    tier_for,
)


def test_a_bucket_averages_rates_and_keeps_the_highest_latency_and_replicas_and_the_last_bounds() -> None:
    samples = [
        Sample(at=1000.0, arrivals_rps=6, completions_rps=5, p95_latency_ms=120, ready=1, starting=2,
               min_replicas=1, max_replicas=3, cost_usd=0.10, usd_per_hour=3.0),
        Sample(at=1004.0, arrivals_rps=2, completions_rps=2, p95_latency_ms=None, ready=3, starting=0,
               min_replicas=1, max_replicas=5, cost_usd=0.12, usd_per_hour=6.0),
        Sample(at=1009.9, arrivals_rps=1, completions_rps=2, p95_latency_ms=80, ready=2, draining=1,
               min_replicas=2, max_replicas=5, cost_usd=0.15, usd_per_hour=9.0),
    ]
    point = None
    for sample in samples:
        point = fold(point, sample, 10)
    assert point is not None
    assert (point.at, point.samples) == (1000.0, 3)
    assert point.arrivals_rps == pytest.approx(3.0)
    assert point.completions_rps == pytest.approx(3.0)
    assert point.usd_per_hour == pytest.approx(6.0)
    assert point.p95_latency_ms == 120  # a missing latency (no completions) does not erase the one seen
    assert (point.ready, point.starting, point.draining) == (3, 2, 1)
    assert (point.min_replicas, point.max_replicas, point.cost_usd) == (2, 5, 0.15)


def test_a_sample_of_a_later_bucket_starts_a_new_one() -> None:
    first = fold(None, Sample(at=1005.0, arrivals_rps=8, ready=4), 10)
    later = fold(first, Sample(at=1010.0, arrivals_rps=1, ready=1), 10)
    assert (later.at, later.samples, later.arrivals_rps, later.ready) == (1010.0, 1, 1, 1)


def test_bucket_start_floors_to_the_resolution() -> None:
    assert bucket_start(1_700_000_007.5, 10) == 1_700_000_000
    assert bucket_start(1_700_000_059.0, 60) == 1_700_000_040
    assert bucket_start(1_700_000_039.9, 60) == 1_699_999_980
    assert bucket_start(1_699_999_980, 60) == 1_699_999_980  # a bucket's start is its own


def test_each_tier_holds_a_bounded_number_of_buckets() -> None:
    assert [(t.resolution_s, t.keep_s) for t in TIERS] == [(10, 7200), (60, 172_800), (600, 691_200)]
    assert sum(t.keep_s // t.resolution_s for t in TIERS) == 4752
    now = 1_000_000.0
    assert oldest_kept(TIERS[0], now) == now - 7200
    assert TIERS[-1].keep_s >= MAX_WINDOW_S  # the coarsest tier still covers the longest window


@pytest.mark.parametrize(("window", "resolution", "points"), [
    ("15m", 10, 90), ("1h", 10, 360), ("2h", 10, 720), ("6h", 60, 360), ("24h", 60, 1440), ("2d", 600, 288),
    ("3d", 600, 432), ("7d", 600, 1008),
])
def test_a_window_reads_the_finest_tier_that_covers_it_in_few_points(window: str, resolution: int,
                                                                     points: int) -> None:
    seconds = parse_window(window)
    tier = tier_for(seconds)
    assert tier.resolution_s == resolution
    assert seconds // tier.resolution_s == points
    assert tier.keep_s >= seconds


def test_a_window_the_1_minute_tier_keeps_but_in_too_many_points_reads_the_coarser_tier() -> None:
    two_days = parse_window("2d")
    assert two_days <= TIERS[1].keep_s and two_days // TIERS[1].resolution_s > MAX_POINTS
    assert tier_for(two_days) is TIERS[2]


@pytest.mark.parametrize("text", ["14m", "8d", "169h", "", "1w", "15", "-1h", "1.5h", "15 m", "9999999m"])
def test_a_window_outside_15_minutes_to_7_days_or_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(BadWindow):
        parse_window(text)


def test_the_window_limits_themselves_are_accepted() -> None:
    assert parse_window("15m") == 900
    assert parse_window("168h") == parse_window("7d") == 604_800
