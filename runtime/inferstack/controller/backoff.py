"""How long a failed deployment waits before the controller tries to start it again (pure).

A deployment whose replicas cannot start (no engine, a bad model id, a flag the engine refuses) is
tried again after a delay that doubles with each failure in a row, up to a cap: a transient cause
clears itself, a hopeless one costs a few events an hour instead of one a second. A spec change or
`resume` tries again at once.
"""

from __future__ import annotations

RETRY_BASE_S = 2.0
RETRY_CAP_S = 300.0


def retry_delay(failed_attempts: int, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """Seconds until the next try after `failed_attempts` failures in a row (the first is 1).
    Base 2 s, cap 300 s: 2, 4, 8, ..., 256, then 300 for good; 9 tries in the first 10 minutes."""
    return min(cap_s, base_s * 2.0 ** min(max(failed_attempts - 1, 0), 32))


def retry_due(retry_at: float | None, now: float) -> bool:
    """A failed deployment is tried again once its retry time has come (none set: not retried)."""
    return retry_at is not None and now >= retry_at
