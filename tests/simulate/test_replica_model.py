"""The replica model: prefill per prompt token, decode slowing with the batch, a sequence limit, a queue."""

from __future__ import annotations

import math

import pytest

from inferstack.engines.sim.config import SimConfig
from inferstack.engines.sim.timing import TimingModel
from inferstack.simulate.replica_model import ReplicaModel, ReplicaProfile

PROFILE = ReplicaProfile(startup_s=0, ttft_s=0.05, prefill_s_per_token=0.0001, decode_s_per_token=0.02,
                         decode_slowdown_per_seq=0.5)


def drain(model: ReplicaModel[str]) -> dict[str, tuple[float, float]]:
    """Run the model until idle; (first token, done) per request."""
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    while (t := model.next_event_at()) < math.inf:
        got_first, finished = model.advance(t)
        first |= dict.fromkeys(got_first, t)
        done |= dict.fromkeys(finished, t)
    return {r: (first[r], done[r]) for r in done}


def test_a_request_alone_prefills_then_decodes_at_the_single_sequence_speed() -> None:
    model: ReplicaModel[str] = ReplicaModel(PROFILE, max_seqs=4)
    model.submit("a", prompt_tokens=1000, output_tokens=11, now=0.0)
    first, done = drain(model)["a"]
    assert first == pytest.approx(0.05 + 0.1)  # 50 ms + 1000 x 0.1 ms
    assert done == pytest.approx(first + 10 * 0.02)  # 10 more steps at 20 ms


def test_decode_slows_with_the_batch() -> None:
    model: ReplicaModel[str] = ReplicaModel(PROFILE, max_seqs=4)
    model.submit("a", 0, 11, now=0.0)
    model.submit("b", 0, 11, now=0.0)
    times = drain(model)
    # Two decoding together: steps of 20 ms x (1 + 0.5) = 30 ms, 10 steps -> 0.3 s after the first token.
    assert times["a"][1] == pytest.approx(0.05 + 10 * 0.03)
    assert times["b"] == times["a"]


def test_beyond_the_sequence_limit_requests_wait_in_the_replicas_queue() -> None:
    model: ReplicaModel[str] = ReplicaModel(PROFILE.model_copy(update={"decode_slowdown_per_seq": 0.0}), max_seqs=1)
    model.submit("a", 0, 6, now=0.0)
    model.submit("b", 0, 6, now=0.0)
    times = drain(model)
    a_done = 0.05 + 5 * 0.02
    assert times["a"][1] == pytest.approx(a_done)
    assert times["b"] == (pytest.approx(a_done + 0.05), pytest.approx(a_done + 0.05 + 5 * 0.02))


def test_the_sim_engine_is_the_model_without_prefill_cost_or_slowdown() -> None:
    config = SimConfig(served_model_names=("m",), ttft_ms=80, tokens_per_s=40, max_concurrency=3, startup_delay_s=2)
    profile = ReplicaProfile.from_sim_config(config)
    timing = TimingModel.from_config(config)
    model: ReplicaModel[str] = ReplicaModel(profile, max_seqs=config.max_concurrency)
    for name in "abc":
        model.submit(name, prompt_tokens=500, output_tokens=50, now=0.0)
    for first, done in drain(model).values():
        assert first == pytest.approx(timing.ttft_s)
        assert done - first == pytest.approx(timing.decode_s(50))
    assert profile.startup_s == 2
