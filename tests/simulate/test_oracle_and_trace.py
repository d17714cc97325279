"""The oracle's replica-seconds (worked numbers) and the trace formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferstack.simulate.oracle import oracle_replica_seconds
from inferstack.simulate.trace import TraceRequest, load_trace


def test_the_oracle_pays_each_start_up_once_and_holds_nothing_it_does_not_need() -> None:
    # 37 arrivals in the first 10 s at 2 rps per replica -> 2 replicas for 10 s, each started ahead (70 s).
    assert oracle_replica_seconds([i * 0.25 for i in range(37)], target_rps=2, startup_s=70) == 2 * (10 + 70)


def test_the_oracle_bridges_a_gap_shorter_than_a_start_up_and_restarts_after_a_longer_one() -> None:
    short_gap = [1.0, 31.0]  # busy 0-10 and 30-40: the 20-s gap costs 20 s kept (< 70 s restart)
    assert oracle_replica_seconds(short_gap, target_rps=1, startup_s=70) == 70 + 10 + 20 + 10
    long_gap = [1.0, 201.0]  # a 190-s gap: restart (70 s) is cheaper than keeping it
    assert oracle_replica_seconds(long_gap, target_rps=1, startup_s=70) == 70 + 10 + 70 + 10


def test_azure_csv_with_seven_fractional_digits(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    trace = load_trace(path, speed=2.0)
    assert trace[0] == TraceRequest(0.0, 374, 44)
    assert trace[1].arrival_s == pytest.approx((50.995169 - 46.68059) / 2)


def test_jsonl_is_sorted_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [{"t": 5, "prompt_tokens": 1, "output_tokens": 2}, {"t": 2, "prompt_tokens": 3, "output_tokens": 4},
             {"t": 100, "prompt_tokens": 3, "output_tokens": 4}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert load_trace(path, max_duration_s=10) == [TraceRequest(0.0, 3, 4), TraceRequest(3.0, 1, 2)]


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,many,44\n")
    with pytest.raises(ValueError, match=r"t.csv:2"):
        load_trace(path)
