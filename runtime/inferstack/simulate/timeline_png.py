"""The timeline (`timeline.series`) drawn to a PNG with matplotlib, headless (the Agg backend: no display).

matplotlib is the optional `plot` extra (`pip install 'inferstack[plot]'`); without it, `render_png`
raises `MissingPlotting` with the install line, and the HTML timeline still works.
"""

from __future__ import annotations

from pathlib import Path

from inferstack.simulate.timeline import BUCKET_S, series
from inferstack.simulate.world import Replay


class MissingPlotting(RuntimeError):
    pass


def render_png(replay: Replay, target_ms: float, title: str, path: Path) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingPlotting("a PNG timeline needs matplotlib: pip install 'inferstack[plot]' "
                              "(or write the timeline to .html)") from exc
    matplotlib.use("Agg")  # no display: a file only
    from matplotlib import pyplot as plt

    s = series(replay, target_ms)
    minutes = lambda t: t / 60  # noqa: E731 - the x axis reads in minutes
    fig, (rate, replicas, latency) = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True)
    fig.suptitle(title)
    rate.bar([minutes(t) for t in s.arrivals_rps], list(s.arrivals_rps.values()), width=minutes(BUCKET_S),
             align="edge", color="#99aabb")
    rate.set_ylabel("arrivals / s")
    at = [minutes(p.at) for p in s.samples]
    replicas.step(at, [p.live for p in s.samples], where="post", color="#3366cc", label="live (paid)")
    replicas.step(at, [p.ready for p in s.samples], where="post", color="#33aa33", label="ready")
    for e in s.events:
        replicas.axvline(minutes(e.at), color="#cc6633", alpha=0.35, linewidth=0.8)
    replicas.set_ylim(0, max((p.live for p in s.samples), default=1) + 1)
    replicas.yaxis.get_major_locator().set_params(integer=True)
    replicas.set_ylabel("replicas")
    replicas.legend(loc="upper left", fontsize="small")
    # Dots, not a line: a bucket without arrivals has no latency, and a line would bridge the silence.
    latency.plot([minutes(t) for t in s.p95_ms], [v / 1000 for v in s.p95_ms.values()], ".", markersize=3,
                 color="#aa33aa", label="p95 of the arrivals in each 10 s")
    latency.axhline(target_ms / 1000, color="#cc0000", label=f"target {target_ms / 1000:g} s")
    latency.set_ylabel("latency (s)")
    latency.set_xlabel("minutes (scale events: orange lines)")
    latency.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
