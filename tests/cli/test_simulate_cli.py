"""`inferstack simulate` and `inferstack tune` on a small generated JSONL trace."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inferstack.cli.app import app
from inferstack.simulate.synthetic import poisson_trace


def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace.jsonl"
    requests = poisson_trace([(120, 3.0), (60, 0.0), (60, 6.0)], seed=2, prompt_tokens=200, output_tokens=20)
    path.write_text("".join(json.dumps({"t": r.arrival_s, "prompt_tokens": r.prompt_tokens,
                                        "output_tokens": r.output_tokens}) + "\n" for r in requests))
    return path


def test_simulate_prints_the_table_and_draws_the_timeline(tmp_path: Path) -> None:
    timeline = tmp_path / "t.html"
    result = CliRunner().invoke(app, ["simulate", str(trace_file(tmp_path)), "--set", "max_replicas=4",
                                      "--timeline", str(timeline), "--baselines"])
    assert result.exit_code == 0, result.output
    for policy in ("inferstack", "hpa-like", "kpa-like", "skyserve-like", "static peak"):
        assert f"| {policy} |" in result.output
    assert "<svg" in timeline.read_text()


def test_simulate_draws_the_timeline_as_a_png(tmp_path: Path) -> None:
    timeline = tmp_path / "t.png"
    result = CliRunner().invoke(app, ["simulate", str(trace_file(tmp_path)), "--set", "max_replicas=4",
                                      "--timeline", str(timeline), "--events", "0"])
    assert result.exit_code == 0, result.output
    image = timeline.read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", image[16:24])  # the IHDR chunk: a drawing, not an empty file
    assert (width, height) == (960, 600)


def test_a_png_without_matplotlib_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    result = CliRunner().invoke(app, ["simulate", str(trace_file(tmp_path)), "--set", "max_replicas=4",
                                      "--timeline", str(tmp_path / "t.png"), "--events", "0"])
    assert result.exit_code == 1
    assert "pip install 'inferstack[plot]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.png").exists()


def test_tune_prints_a_stack_file_snippet(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tune", "--trace", str(trace_file(tmp_path)), "--set", "max_replicas=4",
                                      "--set", "target_latency_p95_ms=5000", "--no-auto-targets"])
    assert result.exit_code == 0, result.output
    assert "inferstack:deployments:" in result.output and "target_rps:" in result.output


def test_a_bad_field_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", str(trace_file(tmp_path)), "--set", "max_replicas=0"])
    assert result.exit_code == 1
    assert "max_replicas" in result.output and "Traceback" not in result.output
