"""Request traces: the Azure LLM inference CSV (TIMESTAMP, ContextTokens, GeneratedTokens) or JSONL lines
`{"t": seconds, "prompt_tokens": n, "output_tokens": n}`, as arrivals in seconds from the first one."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


def load_trace(path: Path, speed: float = 1.0, max_duration_s: float | None = None) -> list[TraceRequest]:
    """The trace's requests in arrival order, time divided by `speed` (2.0 replays an hour in 30 minutes),
    cut at `max_duration_s` of replayed time. A malformed line is a ValueError naming its line."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    raw = _jsonl(path) if path.suffix == ".jsonl" else _azure_csv(path)
    raw.sort(key=lambda r: r[0])
    if not raw:
        raise ValueError(f"{path}: no requests")
    t0 = raw[0][0]
    out = [TraceRequest((t - t0) / speed, max(0, p), max(1, g)) for t, p, g in raw]
    return [r for r in out if max_duration_s is None or r.arrival_s <= max_duration_s]


def _azure_csv(path: Path) -> list[tuple[float, int, int]]:
    rows = []
    with path.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                # Seven fractional digits: datetime takes six.
                stamp = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
                rows.append((stamp.timestamp(), int(row["ContextTokens"]), int(row["GeneratedTokens"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a TIMESTAMP,ContextTokens,GeneratedTokens row ({exc})") from exc
    return rows


def _jsonl(path: Path) -> list[tuple[float, int, int]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((float(d["t"]), int(d["prompt_tokens"]), int(d["output_tokens"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{n}: expected {{\"t\", \"prompt_tokens\", \"output_tokens\"}} ({exc})") from exc
    return rows
