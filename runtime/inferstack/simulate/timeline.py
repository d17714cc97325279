"""A replay drawn as a timeline: arrivals per 10 s, replicas live and ready, the 10-s p95 latency against
the target, and each scale event. `series` is what both drawings show; `render_html` is one
self-contained HTML page (inline SVG, no scripts, each event's reason on hover); `timeline_png.py`
draws the same series to a PNG."""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass

from inferstack.autoscaler.metrics_window import nearest_rank
from inferstack.simulate.world import Replay, Sample, ScaleEvent

BUCKET_S = 10.0
WIDTH, PANEL = 1200, 160


@dataclass(frozen=True)
class Series:
    end_s: float
    arrivals_rps: dict[float, float]  # bucket start -> arrivals per second in it (busy buckets only)
    p95_ms: dict[float, float]  # bucket start -> p95 latency of the requests that arrived in it
    samples: list[Sample]
    events: list[ScaleEvent]
    target_ms: float


def series(replay: Replay, target_ms: float) -> Series:
    arrivals: dict[int, int] = defaultdict(int)
    latencies: dict[int, list[float]] = defaultdict(list)
    for r in replay.requests:
        b = int(r.trace.arrival_s // BUCKET_S)
        arrivals[b] += 1
        latencies[b].append(r.latency_s * 1000)
    return Series(
        end_s=max(replay.end_s, 1.0),
        arrivals_rps={b * BUCKET_S: n / BUCKET_S for b, n in sorted(arrivals.items())},
        p95_ms={b * BUCKET_S: nearest_rank(sorted(v), 95) or 0.0 for b, v in sorted(latencies.items())},
        samples=replay.samples, events=replay.events, target_ms=target_ms,
    )


def _polyline(points: list[tuple[float, float]], color: str) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>'


def render_html(replay: Replay, target_ms: float, title: str) -> str:
    s = series(replay, target_ms)
    x = lambda t: 50 + (WIDTH - 60) * t / s.end_s  # noqa: E731 - a local scale
    top_rate = max(s.arrivals_rps.values(), default=1.0)
    top_replicas = max((p.live for p in s.samples), default=1) or 1
    top_ms = max([target_ms * 1.5, *s.p95_ms.values()])

    def y(panel: int, value: float, top: float) -> float:
        return panel * (PANEL + 30) + 20 + PANEL * (1 - min(value, top) / top)

    parts = [f'<text x="50" y="14">arrivals per second (max {top_rate:.1f})</text>']
    bar = max(1.0, x(BUCKET_S) - x(0))
    for at, rate in s.arrivals_rps.items():
        top = y(0, rate, top_rate)
        parts.append(f'<rect x="{x(at):.1f}" y="{top:.1f}" width="{bar:.1f}" '
                     f'height="{PANEL + 20 - top:.1f}" fill="#9ab"/>')
    parts.append(f'<text x="50" y="{PANEL + 44}">replicas: live (blue), ready (green); max {top_replicas}</text>')
    parts.append(_polyline([(x(p.at), y(1, p.live, top_replicas)) for p in s.samples], "#36c"))
    parts.append(_polyline([(x(p.at), y(1, p.ready, top_replicas)) for p in s.samples], "#3a3"))
    parts += [f'<line x1="{x(e.at):.1f}" x2="{x(e.at):.1f}" y1="{PANEL + 50}" y2="{2 * PANEL + 50}" stroke="#c63">'
              f'<title>{e.at:.0f} s: {e.before} -> {e.after} ({e.rule}): {html.escape(e.reason)}</title></line>'
              for e in s.events]
    parts.append(f'<text x="50" y="{2 * PANEL + 74}">p95 latency per 10 s (ms), target {target_ms:g} ms in red</text>')
    parts.append(_polyline([(x(at), y(2, v, top_ms)) for at, v in s.p95_ms.items()], "#a3a"))
    parts.append(_polyline([(x(0), y(2, target_ms, top_ms)), (x(s.end_s), y(2, target_ms, top_ms))], "#c00"))
    height = 3 * (PANEL + 30) + 20
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<h3>{html.escape(title)}</h3><svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' "
            f"height='{height}' font-family='sans-serif' font-size='12'>{''.join(parts)}</svg>")
