"""The stabilisation window's memory (rule 5 of `decision.py`): scale-down goes only to the highest
recommendation of the window, so each tick's recommendation is remembered while it can still be that
maximum, and the window itself is cost-aware once a start-up has been measured. Pure."""

from __future__ import annotations

from inferstack.spec import ScalingSpec


def remember(history: tuple[tuple[float, int], ...], recommended: int, now: float, window_s: float,
             current: int) -> tuple[tuple[float, int], ...]:
    """Add `recommended` at `now` to the window's running maximum and drop what left the window.

    Window 300 s, history ((0, 5), (100, 3)), now 350, recommended 4: (0, 5) has left the window
    (0 <= 350 - 300) and (100, 3) can never be the maximum again next to a newer 4 -> ((350, 4),).
    A fresh history (state lost or new) starts with the current count, so a restarted controller does
    not shrink at once: it waits one window like everyone else.
    """
    kept = [(t, n) for t, n in history if t > now - window_s]
    if not history and window_s > 0:
        kept = [(now, current)]
    while kept and kept[-1][1] <= recommended:
        kept.pop()
    kept.append((now, recommended))
    return tuple(kept)


def window_s(spec: ScalingSpec, startup_s: float | None) -> float:
    """The spec's window, at most two measured start-ups (never under the metrics window): with 70-s
    start-ups an idle replica is kept 140 s, not 300: past that, starting it again is the cheaper risk."""
    if startup_s is None:
        return spec.stabilisation_window
    return min(spec.stabilisation_window, max(spec.metrics_window_s, 2 * startup_s))
