"""MetricsWindow: rates, percentiles and bounds, with plain float times (no clock)."""

from __future__ import annotations

import pytest

from inferstack.autoscaler.metrics_window import MetricsWindow, WindowStats, nearest_rank


def steady(window: MetricsWindow, start: float, end: float, rps: float) -> None:
    """Arrivals at `rps`, each completing 0.1 s later, from `start` (first at start + half a gap)."""
    gap = 1.0 / rps
    t = start + gap / 2
    while t < end:
        window.arrival(t)
        window.completion(t + 0.1, 0.1, 0.05, True)
        t += gap


def test_empty_window_is_no_data() -> None:
    assert MetricsWindow().observe(100.0, 60, 6) == WindowStats()


@pytest.mark.parametrize(
    ("arrivals", "now", "window_s", "expected_rps"),
    [
        # 1 rps for 120 s (t = 0.5 ... 119.5): the last 60 s hold 60 arrivals.
        ([i + 0.5 for i in range(120)], 120.0, 60, 1.0),
        # Same data, panic-sized window: 6 arrivals over 6 s.
        ([i + 0.5 for i in range(120)], 120.0, 6, 1.0),
        # A fresh burst: 30 arrivals in the first 3 s of a 60 s window -> 30 / 3 s, not 30 / 60 s.
        ([100.0 + i * 0.1 for i in range(30)], 103.0, 60, 10.0),
        # A window 3 ms old divides by at least 1 s: one arrival is 1 rps, not 333.
        ([100.0], 100.003, 60, 1.0),
        # A sample exactly window_s old has left the window: (60, 120] holds only t=90.
        ([0.0, 60.0, 90.0], 120.0, 60, 1 / 60),
        # Nothing for a whole window after the last arrival.
        ([0.0, 1.0, 2.0], 200.0, 60, 0.0),
    ],
    ids=["steady", "steady-panic-window", "fresh-burst", "fresh-floor-1s", "window-edge", "gone-quiet"],
)
def test_rate(arrivals: list[float], now: float, window_s: float, expected_rps: float) -> None:
    window = MetricsWindow()
    for t in arrivals:
        window.arrival(t)
    assert window.observe(now, window_s, min(window_s, 6)).rps == pytest.approx(expected_rps)


def test_panic_rps_sees_a_burst_the_stable_window_dilutes() -> None:
    window = MetricsWindow()
    steady(window, 0.0, 114.0, rps=2)  # 2 rps for nearly two minutes...
    steady(window, 114.0, 120.0, rps=50)  # ...then 50 rps for the last 6 s
    stats = window.observe(120.0, 60, 6)
    assert stats.panic_rps == pytest.approx(50, rel=0.02)
    assert stats.rps == pytest.approx((54 * 2 + 6 * 50) / 60, rel=0.02)  # ~6.8


def test_a_larger_window_after_a_trim_is_not_diluted() -> None:
    window = MetricsWindow()
    steady(window, 0.0, 120.0, rps=1)
    window.observe(120.0, 6, 6)  # keeps only the last 6 s
    # Asked for 60 s now, only 6 s of arrivals are left: divide by 6 s, not 60 s.
    assert window.observe(120.0, 60, 6).rps == pytest.approx(1.0)


def test_sample_cap_keeps_the_rate_right() -> None:
    window = MetricsWindow(max_samples=10)
    for i in range(100):
        window.arrival(i * 0.1)  # 10 rps for 10 s; only the newest 10 arrivals are kept
    stats = window.observe(10.0, 60, 6)
    # Measured over the span the kept samples cover (~1 s), not diluted to 10 / 10 s = 1 rps.
    assert 9.0 <= stats.rps <= 10.0
    assert stats.in_flight == 100  # the count is exact whatever the cap


def test_in_flight_and_last_activity() -> None:
    window = MetricsWindow()
    assert window.in_flight == 0 and window.last_activity_at is None
    for t in (10.0, 11.0, 12.0):
        window.arrival(t)
    window.completion(15.0, 5.0, 0.2, True)
    assert window.in_flight == 2
    assert window.last_activity_at == 15.0
    stats = window.observe(16.0, 60, 6)
    assert (stats.in_flight, stats.last_activity_at, stats.completed) == (2, 15.0, 1)


def test_in_flight_never_goes_negative() -> None:
    window = MetricsWindow()
    window.completion(1.0, 0.1, None, True)  # a completion without its arrival (a gateway bug)
    window.arrival(2.0)
    assert window.in_flight == 1


def test_a_long_stream_stays_in_flight_after_its_arrival_left_the_window() -> None:
    window = MetricsWindow()
    window.arrival(0.0)
    stats = window.observe(600.0, 60, 6)
    assert (stats.rps, stats.in_flight, stats.last_activity_at) == (0.0, 1, 0.0)


def test_percentiles_are_nearest_rank_over_successes_in_the_window() -> None:
    window = MetricsWindow()
    window.completion(10.0, 30.0, 1.0, True)  # left the window by t=100: not counted
    for i in range(1, 21):  # latencies 0.1 ... 2.0 s, TTFT 10 ... 200 ms, on every other one only
        window.arrival(80.0 + i)
        window.completion(80.0 + i, i * 0.1, i * 0.01 if i % 2 == 0 else None, True)
    window.arrival(99.0)
    window.completion(99.5, 0.005, None, False)  # a fast failure must not make p50 look fast
    stats = window.observe(100.0, 60, 6)
    assert stats.p50_latency_ms == pytest.approx(1000)  # rank ceil(0.5 x 20) = 10 -> 1.0 s
    assert stats.p95_latency_ms == pytest.approx(1900)  # rank ceil(0.95 x 20) = 19 -> 1.9 s
    assert stats.p50_ttft_ms == pytest.approx(100)  # 10 TTFTs 20..200 ms: rank 5 -> 100 ms
    assert stats.p95_ttft_ms == pytest.approx(200)  # rank ceil(9.5) = 10 -> 200 ms
    assert (stats.completed, stats.failed) == (20, 1)


@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [([], 95, None), ([7.0], 95, 7.0), ([7.0], 50, 7.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
     ([1.0, 2.0, 3.0, 4.0], 95, 4.0), ([float(i) for i in range(1, 101)], 95, 95.0)],
)
def test_nearest_rank(values: list[float], percentile: float, expected: float | None) -> None:
    assert nearest_rank(values, percentile) == expected


def test_completion_rates_follow_the_same_rules_as_arrivals() -> None:
    # Replicas get through 4 a second for 10 s; a 5 s window and a 2 s panic window both see 4/s.
    window = MetricsWindow()
    for i in range(40):
        window.arrival(i * 0.25)
        window.completion(i * 0.25 + 0.1, 0.1, None, ok=i % 4 != 0)  # failures count: they were got through
    stats = window.observe(10.0, 5, 2)
    assert stats.completion_rps == pytest.approx(4.0)
    assert stats.panic_completion_rps == pytest.approx(4.0)
    # A window younger than asked divides by its age (1 s floor), like arrivals: 3 done in 0.5 s is 3/s.
    young = MetricsWindow()
    for t in (0.1, 0.3, 0.5):
        young.completion(t, 0.05, None, ok=True)
    assert young.observe(0.6, 60, 6).completion_rps == pytest.approx(3.0)
    # The cap keeps only the newest completions: the rate is measured over the span they cover.
    capped = MetricsWindow(max_samples=10)
    for i in range(100):
        capped.completion(i * 0.1, 0.05, None, ok=True)
    assert 9.0 <= capped.observe(10.0, 60, 6).completion_rps <= 10.0
