"""Windows of several instances added up: rates, counts and in-flight sum; percentiles from buckets."""

from __future__ import annotations

from inferstack.autoscaler.metrics_window import MetricsWindow, nearest_rank
from inferstack.autoscaler.shared_window import BUCKET_BOUNDS_MS, WindowShare, bucket_percentile, merge, share


def window_share(window: MetricsWindow, now: float) -> WindowShare:
    stats, latencies, ttfts = window.observe_with_samples(now, 60, 6)
    return share(stats, latencies, ttfts)


def busy_window(start: float, requests: int, latency_s: float, in_flight: int = 0) -> MetricsWindow:
    window = MetricsWindow()
    for i in range(requests):
        at = start + i * 0.1
        window.arrival(at)
        window.completion(at + latency_s, latency_s, latency_s / 10, ok=True)
    for _ in range(in_flight):
        window.arrival(start + requests * 0.1)
    return window


def test_alone_an_instance_sees_exactly_its_own_window() -> None:
    window = busy_window(100.0, 30, 0.2)
    own = window_share(window, 110.0)
    assert merge(own, []) == window.observe(110.0, 60, 6)


def test_two_instances_add_up_rates_counts_and_in_flight_and_the_latest_activity() -> None:
    here = window_share(busy_window(100.0, 30, 0.2, in_flight=2), 110.0)
    there = window_share(busy_window(103.0, 50, 0.8, in_flight=1), 110.0)
    merged = merge(here, [WindowShare.from_json(there.to_json())])  # through the row's JSON, as published
    assert merged.rps == here.stats.rps + there.stats.rps
    assert merged.panic_rps == here.stats.panic_rps + there.stats.panic_rps
    assert (merged.in_flight, merged.completed) == (3, 80)
    assert merged.last_activity_at == there.stats.last_activity_at
    # 30 requests of 200 ms and 50 of 800 ms: the exact p95 is 800 ms, p50 800 ms too (rank 40 of 80).
    exact = sorted([200.0] * 30 + [800.0] * 50)
    for percentile, value in ((50, merged.p50_latency_ms), (95, merged.p95_latency_ms)):
        assert value is not None and exact_or_one_bucket_above(nearest_rank(exact, percentile), value)


def exact_or_one_bucket_above(exact: float | None, bucketed: float) -> bool:
    assert exact is not None
    return exact <= bucketed <= exact * 1.25


def test_a_bucketed_percentile_is_the_upper_bound_of_its_bucket() -> None:
    counts = [0] * len(BUCKET_BOUNDS_MS)
    counts[1], counts[2] = 3, 1
    assert bucket_percentile(counts, 50) == BUCKET_BOUNDS_MS[1]
    assert bucket_percentile(counts, 95) == BUCKET_BOUNDS_MS[2]
    assert bucket_percentile([0] * len(BUCKET_BOUNDS_MS), 95) is None
