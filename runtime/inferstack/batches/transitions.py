"""The batch status machine, as OpenAI's: pure functions over plain values, no I/O, no clock.

    validating --> in_progress --> finalizing --> completed
        |              |
        |              +--> expired            (24 h passed; unfinished lines get batch_expired)
        +--> failed                            (validation errors, listed per line)
    validating | in_progress --> cancelling --> cancelled   (results so far are kept)

Every status change also stamps its `<status>_at` timestamp, which is how the batch object shows
when each step happened.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class BatchStatus(StrEnum):
    validating = "validating"
    failed = "failed"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    expired = "expired"
    cancelling = "cancelling"
    cancelled = "cancelled"

    @classmethod
    def active(cls) -> frozenset[BatchStatus]:
        """Statuses in which the runner still has work to do (and resumes after a restart)."""
        return frozenset({cls.validating, cls.in_progress, cls.finalizing, cls.cancelling})

    @classmethod
    def terminal(cls) -> frozenset[BatchStatus]:
        return frozenset({cls.failed, cls.completed, cls.expired, cls.cancelled})


ALLOWED: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.validating: frozenset({BatchStatus.in_progress, BatchStatus.failed, BatchStatus.cancelling}),
    BatchStatus.in_progress: frozenset({BatchStatus.finalizing, BatchStatus.expired, BatchStatus.cancelling}),
    BatchStatus.finalizing: frozenset({BatchStatus.completed}),
    BatchStatus.cancelling: frozenset({BatchStatus.cancelled}),
}

COMPLETION_WINDOWS_S = {"24h": 24 * 3600}


class InvalidTransition(Exception):
    def __init__(self, current: BatchStatus, target: BatchStatus) -> None:
        super().__init__(f"a batch that is {current} cannot become {target}")
        self.current = current
        self.target = target


def transition(current: BatchStatus, target: BatchStatus, now: float) -> dict[str, Any]:
    """The column values that move a batch from `current` to `target`: its status and timestamp."""
    if target not in ALLOWED.get(current, frozenset()):
        raise InvalidTransition(current, target)
    return {"status": target.value, f"{target.value}_at": now}


class CannotCancel(Exception):
    pass


def cancel(current: BatchStatus, now: float) -> dict[str, Any] | None:
    """What a user's cancel changes: `None` if the batch is already cancelling or cancelled (asking
    twice is harmless), else the move to cancelling. A batch that is finalizing or finished has all
    its results already, so there is nothing left to cancel."""
    if current in (BatchStatus.cancelling, BatchStatus.cancelled):
        return None
    if BatchStatus.cancelling not in ALLOWED.get(current, frozenset()):
        raise CannotCancel(f"Cannot cancel a batch that is {current}.")
    return transition(current, BatchStatus.cancelling, now)


class Step(StrEnum):
    """What the runner does next with a batch it owns."""

    validate = "validate"
    run = "run"
    complete = "complete"  # finalizing -> completed
    cancel = "cancel"  # cancelling -> cancelled
    expire = "expire"  # in_progress -> expired
    none = "none"


def next_step(status: BatchStatus, expires_at: float, now: float) -> Step:
    """Decided from durable facts only, so a restarted runner picks up exactly where one stopped.

    A batch created at t=0 expires at t=86,400: at t=86,400.5 an in_progress batch expires instead
    of sending more lines, and the lines without a result get `batch_expired`.
    """
    if status is BatchStatus.validating:
        return Step.validate
    if status is BatchStatus.in_progress:
        return Step.expire if now >= expires_at else Step.run
    if status is BatchStatus.finalizing:
        return Step.complete
    if status is BatchStatus.cancelling:
        return Step.cancel
    return Step.none


# How each finishing step ends: (from, to, the error code of lines that never got a result).
# Completing has no such lines by construction: it starts only once every line has a result.
FINISHES: dict[Step, tuple[BatchStatus, BatchStatus, str | None]] = {
    Step.complete: (BatchStatus.finalizing, BatchStatus.completed, None),
    Step.cancel: (BatchStatus.cancelling, BatchStatus.cancelled, "batch_cancelled"),
    Step.expire: (BatchStatus.in_progress, BatchStatus.expired, "batch_expired"),
}

UNFINISHED_MESSAGES = {
    "batch_cancelled": "The batch was cancelled before this request completed.",
    "batch_expired": "The batch expired before this request could be completed.",
}
