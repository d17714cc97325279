"""A replay drawn as one self-contained HTML page (inline SVG, no scripts): arrivals per 10 s, replicas
live and ready, the 10-s p95 latency against the target, and each scale event with its reason on hover."""

from __future__ import annotations

import html
from collections import defaultdict

from inferstack.autoscaler.metrics_window import nearest_rank
from inferstack.simulate.world import Replay

BUCKET_S = 10.0
WIDTH, PANEL = 1200, 160


def _polyline(points: list[tuple[float, float]], color: str) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>'


def render_html(replay: Replay, target_ms: float, title: str) -> str:
    end = max(replay.end_s, 1.0)
    x = lambda t: 50 + (WIDTH - 60) * t / end  # noqa: E731 - a local scale
    arrivals: dict[int, int] = defaultdict(int)
    latencies: dict[int, list[float]] = defaultdict(list)
    for r in replay.requests:
        b = int(r.trace.arrival_s // BUCKET_S)
        arrivals[b] += 1
        latencies[b].append(r.latency_s * 1000)
    buckets = range(int(end // BUCKET_S) + 1)
    top_rate = max(arrivals.values(), default=1) / BUCKET_S
    top_replicas = max((s.live for s in replay.samples), default=1) or 1
    p95s = {b: nearest_rank(sorted(latencies[b]), 95) or 0.0 for b in buckets if latencies[b]}
    top_ms = max([target_ms * 1.5, *p95s.values()])

    def y(panel: int, value: float, top: float) -> float:
        return panel * (PANEL + 30) + 20 + PANEL * (1 - min(value, top) / top)

    parts = [f'<text x="50" y="14">arrivals per second (max {top_rate:.1f})</text>']
    bar = max(1.0, x(BUCKET_S) - x(0))
    for b in buckets:
        if arrivals[b]:
            top = y(0, arrivals[b] / BUCKET_S, top_rate)
            parts.append(f'<rect x="{x(b * BUCKET_S):.1f}" y="{top:.1f}" width="{bar:.1f}" '
                         f'height="{PANEL + 20 - top:.1f}" fill="#9ab"/>')
    parts.append(f'<text x="50" y="{PANEL + 44}">replicas: live (blue), ready (green); max {top_replicas}</text>')
    parts.append(_polyline([(x(s.at), y(1, s.live, top_replicas)) for s in replay.samples], "#36c"))
    parts.append(_polyline([(x(s.at), y(1, s.ready, top_replicas)) for s in replay.samples], "#3a3"))
    parts += [f'<line x1="{x(e.at):.1f}" x2="{x(e.at):.1f}" y1="{PANEL + 50}" y2="{2 * PANEL + 50}" stroke="#c63">'
              f'<title>{e.at:.0f} s: {e.before} -> {e.after} ({e.rule}): {html.escape(e.reason)}</title></line>'
              for e in replay.events]
    parts.append(f'<text x="50" y="{2 * PANEL + 74}">p95 latency per 10 s (ms), target {target_ms:g} ms in red</text>')
    parts.append(_polyline([(x(b * BUCKET_S), y(2, v, top_ms)) for b, v in sorted(p95s.items())], "#a3a"))
    parts.append(_polyline([(x(0), y(2, target_ms, top_ms)), (x(end), y(2, target_ms, top_ms))], "#c00"))
    height = 3 * (PANEL + 30) + 20
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<h3>{html.escape(title)}</h3><svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' "
            f"height='{height}' font-family='sans-serif' font-size='12'>{''.join(parts)}</svg>")
