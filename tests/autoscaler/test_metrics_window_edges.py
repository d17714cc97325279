"""MetricsWindow's promises at its limits: memory stays bounded, the sample cap treats arrivals and
completions alike, and a sample exactly a window old has left it."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from inferstack.autoscaler.metrics_window import MetricsWindow, nearest_rank


def allocated_by(feed: Callable[[], object]) -> int:
    """Bytes still allocated after `feed` ran (what the window it built holds on to)."""
    tracemalloc.start()
    try:
        kept = feed()
        size = tracemalloc.get_traced_memory()[0]
        del kept
        return size
    finally:
        tracemalloc.stop()


def test_the_sample_cap_bounds_memory_however_fast_requests_come() -> None:
    def burst() -> MetricsWindow:
        window = MetricsWindow(max_samples=500)
        for i in range(20_000):  # 20,000 requests in one second: all inside any window
            window.arrival(i / 20_000)
            window.completion(i / 20_000, 0.01, None, True)
        return window

    assert allocated_by(burst) < 200_000  # 2 x 500 samples, ~60 kB; without the cap ~20,000 arrivals, ~650 kB


def test_reading_the_window_forgets_what_left_it_so_memory_stays_bounded_between_ticks() -> None:
    def hours_at_one_request_a_second() -> MetricsWindow:
        window = MetricsWindow()
        for second in range(10_000):
            window.arrival(float(second))
            window.completion(second + 0.5, 0.5, 0.1, True)
            if second % 30 == 0:
                window.observe(float(second), 60, 6)  # the controller's tick
        return window

    # ~2 x 90 samples, ~20 kB; keeping all 20,000 would take ~2 MB.
    assert allocated_by(hours_at_one_request_a_second) < 200_000


@pytest.mark.parametrize("cap", [10, 37])
def test_the_cap_treats_completions_like_arrivals(cap: int) -> None:
    # Requests that each complete the moment they arrive, 10 a second for 10 s, more than the cap holds.
    window = MetricsWindow(max_samples=cap)
    for i in range(100):
        window.arrival(i * 0.1)
        window.completion(i * 0.1, 0.0, None, True)
    stats = window.observe(10.0, 60, 6)
    assert stats.completion_rps == stats.rps
    assert stats.panic_completion_rps == stats.panic_rps
    assert 9.0 <= stats.rps <= 10.0


def test_a_completion_exactly_a_window_old_has_left_it() -> None:
    # A panic window longer than the metrics window (the spec allows it) keeps the sample in memory;
    # the metrics window's percentiles and counts must still leave it out.
    window = MetricsWindow()
    window.completion(40.0, 9.0, None, True)  # now - window_s: out, like an arrival at that moment
    window.completion(40.001, 0.2, None, False)
    window.completion(70.0, 0.1, None, True)
    stats = window.observe(100.0, 60, 120)
    assert (stats.completed, stats.failed, stats.p95_latency_ms) == (1, 1, pytest.approx(100.0))


def test_an_arrival_at_the_moment_of_the_read_counts() -> None:
    window = MetricsWindow()
    window.arrival(100.0)
    window.completion(100.0, 0.0, None, True)
    stats = window.observe(100.0, 60, 6)
    assert (stats.rps, stats.panic_rps, stats.completion_rps) == (1.0, 1.0, 1.0)


def test_an_arrival_exactly_a_window_old_has_left_it_too() -> None:
    window = MetricsWindow()
    for t in (40.0, 70.0):
        window.arrival(t)
    # The 120-s panic window keeps t=40 in memory; the 60-s window (40, 100] holds only t=70.
    assert window.observe(100.0, 60, 120).rps == pytest.approx(1 / 60)


def test_completion_rates_are_not_diluted_by_a_larger_window_after_a_trim() -> None:
    window = MetricsWindow()
    for second in range(120):
        window.completion(second + 0.5, 0.1, None, True)
    window.observe(120.0, 6, 6)  # keeps only the last 6 s
    assert window.observe(120.0, 60, 6).completion_rps == pytest.approx(1.0)


def test_a_rank_that_is_whole_in_exact_arithmetic_is_taken_as_is() -> None:
    # 7% of 100 is 7.000000000000001 in floating point: the 7th value, not the 8th.
    assert nearest_rank([float(i) for i in range(1, 101)], 7) == 7.0
