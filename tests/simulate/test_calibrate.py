"""fit_profile: measured time to first token and per-token time at two concurrencies -> a replica profile."""

from __future__ import annotations

import pytest

from inferstack.simulate.calibrate import Measurement, fit_profile


def test_fits_the_single_sequence_speed_and_the_slowdown_per_extra_sequence() -> None:
    measured = [Measurement(1, 0.050, 0.020), Measurement(1, 0.052, 0.021), Measurement(1, 0.049, 0.020),
                Measurement(16, 0.090, 0.026), Measurement(16, 0.095, 0.026)]
    profile = fit_profile(measured, startup_s=42)
    assert (profile.ttft_s, profile.decode_s_per_token, profile.startup_s) == (0.050, 0.020, 42)
    assert profile.decode_slowdown_per_seq == pytest.approx((0.026 / 0.020 - 1) / 15)  # 0.02 per sequence


def test_one_level_has_no_slowdown_and_nothing_measured_is_an_error() -> None:
    assert fit_profile([Measurement(4, 0.1, 0.03)], startup_s=1).decode_slowdown_per_seq == 0.0
    with pytest.raises(ValueError, match="no measurements"):
        fit_profile([], startup_s=1)
