"""The merged percentiles' promise, value by value: at most 25% above the exact one, from 1 ms to ~20 minutes.

A leader adds its followers' windows to its own through latency buckets; the autoscaler's latency band
reads the merged p95, so how far a bucket can overstate a latency is a behaviour.
"""

from __future__ import annotations

import pytest

from inferstack.autoscaler.metrics_window import WindowStats
from inferstack.autoscaler.shared_window import WindowShare, bucket_percentile, histogram, merge, share

# 0.5 ms to ~19 minutes, in steps that land inside buckets and on their edges.
LATENCIES_MS = [0.5, 0.9, 1.0, 1.1, 1.25, 1.3, 2.0, 7.0, 33.3, 100.0, 250.0, 999.0, 1000.0, 4321.0, 60_000.0,
                600_000.0, 1_100_000.0]


def merged(latencies_ms: list[float], others: list[list[float]]) -> WindowStats:
    shares = [share(WindowStats(completed=len(values)), values, values) for values in (latencies_ms, *others)]
    return merge(shares[0], shares[1:])


@pytest.mark.parametrize("latency_ms", LATENCIES_MS)
def test_a_merged_latency_is_at_most_a_quarter_above_the_exact_one(latency_ms: float) -> None:
    stats = merged([latency_ms], [[latency_ms]])  # two instances each saw one request of this latency
    for value in (stats.p50_latency_ms, stats.p95_latency_ms, stats.p50_ttft_ms, stats.p95_ttft_ms):
        assert value is not None
        # Everything up to 1 ms reads as 1 ms, the scale's first bound.
        assert max(latency_ms, 1.0) <= value <= max(latency_ms, 1.0) * 1.25, (latency_ms, value)


def test_a_latency_beyond_the_scale_reads_as_its_top_of_about_twenty_minutes() -> None:
    hour_ms = 3_600_000.0
    stats = merged([hour_ms, 200.0], [[hour_ms]])
    assert stats.p95_latency_ms is not None and 20 * 60_000 <= stats.p95_latency_ms <= 25 * 60_000
    assert stats.p95_latency_ms == merged([2 * hour_ms], [[5 * hour_ms]]).p95_latency_ms  # one top bucket
    assert stats.p50_latency_ms == merged([hour_ms], [[hour_ms]]).p50_latency_ms  # rank 2 of 3 is an hour too


@pytest.mark.parametrize(("values", "p50", "p95"), [
    ([7.0], 7.0, 7.0),  # one value is every percentile
    ([1.0, 1.0, 1.0, 100.0], 1.0, 100.0),  # p95 of 4 is the 4th (rank ceil(3.8))
    ([1.0] * 19 + [100.0], 1.0, 1.0),  # p95 of 20 is the 19th
    ([1.0] * 10 + [100.0] * 10, 1.0, 100.0),  # p50 of 20 is the 10th, p95 the 19th
])
def test_bucketed_percentiles_take_the_nearest_rank(values: list[float], p50: float, p95: float) -> None:
    counts = histogram(values)
    for percentile, exact in ((50, p50), (95, p95)):
        bound = bucket_percentile(counts, percentile)
        assert bound is not None and exact <= bound <= exact * 1.25, (percentile, bound)


def test_an_instance_never_active_does_not_hide_another_ones_activity() -> None:
    quiet = share(WindowStats(), [], [])
    busy = share(WindowStats(completed=1, last_activity_at=1234.5), [80.0], [])
    assert merge(quiet, [busy]).last_activity_at == 1234.5
    assert merge(quiet, [quiet]).last_activity_at is None


def test_each_latency_is_counted_once_in_its_bucket() -> None:
    counts = histogram([0.9, 1.0, 1.1, 5000.0])
    assert (counts[0], counts[1], sum(counts)) == (2, 1, 4)  # <= 1 ms twice, <= 1.25 ms once


def test_a_share_on_another_bucket_scale_is_refused_not_misread() -> None:
    own = share(WindowStats(completed=1), [80.0], [])
    # An instance with 10 buckets, in its latencies or in its times to first token.
    with pytest.raises(ValueError):
        merge(own, [WindowShare(WindowStats(completed=1), (1,) * 10, own.ttft_counts)])
    with pytest.raises(ValueError):
        merge(own, [WindowShare(WindowStats(), own.latency_counts, (0,) * 10)])


def test_the_merged_median_is_the_middle_request_not_the_slowest() -> None:
    # Three requests of 10 ms here, one of 1 s there: the median is 10 ms, the p95 is 1 s.
    stats = merged([10.0, 10.0, 10.0], [[1000.0]])
    for p50, p95 in ((stats.p50_latency_ms, stats.p95_latency_ms), (stats.p50_ttft_ms, stats.p95_ttft_ms)):
        assert p50 is not None and 10.0 <= p50 <= 12.5
        assert p95 is not None and 1000.0 <= p95 <= 1250.0
