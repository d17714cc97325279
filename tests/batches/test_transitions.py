"""The batch status machine: OpenAI's statuses and moves, and what the runner does next."""

from __future__ import annotations

import pytest

from inferstack.batches.transitions import (
    BatchStatus,
    CannotCancel,
    InvalidTransition,
    Step,
    cancel,
    next_step,
    transition,
)

S = BatchStatus
CREATED = 1_700_000_000.0
EXPIRES = CREATED + 86_400


@pytest.mark.parametrize(("current", "target"), [
    (S.validating, S.in_progress), (S.validating, S.failed), (S.validating, S.cancelling),
    (S.in_progress, S.finalizing), (S.in_progress, S.expired), (S.in_progress, S.cancelling),
    (S.finalizing, S.completed), (S.cancelling, S.cancelled),
])
def test_allowed_moves_stamp_their_timestamp(current: BatchStatus, target: BatchStatus) -> None:
    assert transition(current, target, 123.0) == {"status": target.value, f"{target.value}_at": 123.0}


@pytest.mark.parametrize(("current", "target"), [
    (S.validating, S.completed), (S.in_progress, S.completed), (S.finalizing, S.cancelling),
    (S.completed, S.in_progress), (S.failed, S.in_progress), (S.cancelled, S.cancelling),
    (S.expired, S.completed), (S.cancelling, S.in_progress),
])
def test_other_moves_are_refused(current: BatchStatus, target: BatchStatus) -> None:
    with pytest.raises(InvalidTransition):
        transition(current, target, 0.0)


def test_terminal_statuses_are_final() -> None:
    for status in S.terminal():
        for target in S:
            with pytest.raises(InvalidTransition):
                transition(status, target, 0.0)
    assert S.active() | S.terminal() == set(S)


@pytest.mark.parametrize("current", [S.validating, S.in_progress])
def test_cancel_of_a_running_batch_moves_to_cancelling(current: BatchStatus) -> None:
    assert cancel(current, 5.0) == {"status": "cancelling", "cancelling_at": 5.0}


@pytest.mark.parametrize("current", [S.cancelling, S.cancelled])
def test_cancelling_twice_changes_nothing(current: BatchStatus) -> None:
    assert cancel(current, 5.0) is None


@pytest.mark.parametrize("current", [S.finalizing, S.completed, S.failed, S.expired])
def test_a_finished_batch_cannot_be_cancelled(current: BatchStatus) -> None:
    with pytest.raises(CannotCancel, match=current.value):
        cancel(current, 5.0)


@pytest.mark.parametrize(("status", "now", "step"), [
    (S.validating, CREATED, Step.validate),
    (S.in_progress, CREATED + 10, Step.run),
    (S.in_progress, EXPIRES - 0.5, Step.run),
    (S.in_progress, EXPIRES, Step.expire),  # 24 h after creation, not one second more
    (S.in_progress, EXPIRES + 3600, Step.expire),
    (S.finalizing, EXPIRES + 3600, Step.complete),  # every line has its result: finish, even late
    (S.cancelling, CREATED + 10, Step.cancel),
    (S.completed, CREATED, Step.none), (S.failed, CREATED, Step.none),
    (S.cancelled, CREATED, Step.none), (S.expired, CREATED, Step.none),
])
def test_next_step_follows_the_durable_status_and_the_deadline(status: BatchStatus, now: float, step: Step) -> None:
    assert next_step(status, EXPIRES, now) is step
