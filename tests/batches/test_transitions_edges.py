"""The batch status machine's edges a caller meets: the window a "24h" batch gets, what a refused move
says, and the line errors a cancelled or expired batch writes. Pure: no store, no clock."""

from __future__ import annotations

import pytest

from inferstack.batches.schemas import CreateBatch
from inferstack.batches.transitions import (
    FINISHES,
    UNFINISHED_MESSAGES,
    BatchStatus,
    InvalidTransition,
    Step,
    next_step,
    transition,
)

S = BatchStatus


def test_a_24h_completion_window_gives_a_batch_a_day_to_finish() -> None:
    body = CreateBatch(input_file_id="file-abc", endpoint="/v1/chat/completions", completion_window="24h")
    created = 1_700_000_000.0
    expires = created + body.window_s
    assert expires - created == 24 * 60 * 60
    assert next_step(S.in_progress, expires, expires - 1) is Step.run
    assert next_step(S.in_progress, expires, expires) is Step.expire


def test_a_refused_move_names_both_statuses() -> None:
    with pytest.raises(InvalidTransition) as refused:
        transition(S.completed, S.in_progress, 0.0)
    assert (refused.value.current, refused.value.target) == (S.completed, S.in_progress)
    assert str(refused.value) == "a batch that is completed cannot become in_progress"


@pytest.mark.parametrize(("step", "moves", "code"), [
    (Step.complete, (S.finalizing, S.completed), None),
    (Step.cancel, (S.cancelling, S.cancelled), "batch_cancelled"),
    (Step.expire, (S.in_progress, S.expired), "batch_expired"),
])
def test_each_finishing_step_is_an_allowed_move_and_explains_its_unfinished_lines(
        step: Step, moves: tuple[BatchStatus, BatchStatus], code: str | None) -> None:
    current, target, unfinished = FINISHES[step]
    assert (current, target, unfinished) == (*moves, code)
    assert transition(current, target, 7.0)["status"] == target.value  # the runner's move is an allowed one
    assert code is None or code in UNFINISHED_MESSAGES  # every unfinished line gets a message
