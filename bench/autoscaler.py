"""Autoscaler benchmark: every trace in ../shared/traces (and a seeded bursty 1.8-hour trace) replayed in
the simulator with the shipped scaling defaults, against the oracle and the baselines, in one run.

    .venv/bin/python bench/autoscaler.py [--traces DIR] [--speed 1] [--no-synthetic] [--timelines DIR]

`--timelines DIR` also draws inferstack's replay of each trace to DIR/<trace>.png (the plot extra).

Per trace: the deployment is the default spec (sim engine, 16 sequences per replica; min_replicas 1,
max_replicas 16, every other scaling field at its default) with the two fields that describe the
workload rather than the policy taken from the trace and the replica profile (`simulate/sizing.py`):
target_rps (what one replica sustains at 80% of its slots) and target_latency_p95_ms (1.5x the p99
request's own time on a busy replica). The replica is `ReplicaProfile()`: 70-s start-up, 50 ms + 0.05
ms per prompt token to the first token, 20 ms per output token, 1% slower per extra sequence.

Acceptance (issue 11): inferstack keeps >= 99% of requests inside the target at <= 1.5x the oracle's
replica-hours, with fewer replica-hours than every baseline that meets the same SLO.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))

from inferstack.simulate.compare import PRODUCTION, compare  # noqa: E402
from inferstack.simulate.replica_model import ReplicaProfile  # noqa: E402
from inferstack.simulate.report import Summary, table  # noqa: E402
from inferstack.simulate.sizing import sized  # noqa: E402
from inferstack.simulate.synthetic import BURSTY, poisson_trace  # noqa: E402
from inferstack.simulate.timeline_png import render_png  # noqa: E402
from inferstack.simulate.trace import TraceRequest, load_trace  # noqa: E402
from inferstack.simulate.world import World  # noqa: E402
from inferstack.spec import DeploymentSpec  # noqa: E402

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
SPEC = DeploymentSpec(hf_model_id="trace/replay", engine="sim", hardware_profile="gpu.l4", max_replicas=16)
SLO = 0.99


def verdict(rows: list[Summary]) -> str:
    ours = next(r for r in rows if r.policy == PRODUCTION)
    rivals = [r for r in rows if r.policy != PRODUCTION and r.meets(SLO)]
    cheaper = all(ours.replica_hours < r.replica_hours for r in rivals)
    ok = ours.meets(SLO) and ours.oracle_ratio <= 1.5 and cheaper
    return (f"{'PASS' if ok else 'FAIL'}: {ours.inside_target:.2%} inside target (>= 99%), "
            f"{ours.oracle_ratio:.2f}x oracle (<= 1.5), cheaper than "
            f"{', '.join(r.policy for r in rivals) or 'no baseline'} meeting the SLO: {'yes' if cheaper else 'no'}")


def run(name: str, trace: list[TraceRequest], timelines: Path | None) -> None:
    profile = ReplicaProfile()
    spec = sized(SPEC, trace, profile)
    started = time.process_time()
    rows = compare(trace, spec, profile)
    span_h = trace[-1].arrival_s / 3600
    print(f"\n### {name}: {len(trace)} requests over {span_h:.2f} h; target_rps {spec.target_rps:g}, "
          f"target p95 {spec.target_latency_p95_ms:g} ms; {time.process_time() - started:.1f} s of CPU for "
          f"{len(rows)} replays\n")
    print(table(rows))
    print(f"\n{verdict(rows)}")
    if timelines is not None:
        timelines.mkdir(parents=True, exist_ok=True)
        path = timelines / f"{Path(name).stem.replace(' ', '_')}.png"
        render_png(World(spec, profile).run(trace), spec.target_latency_p95_ms, f"inferstack on {name}", path)
        print(f"timeline: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--timelines", type=Path, help="Draw inferstack's replay of each trace to DIR/<trace>.png.")
    args = parser.parse_args()
    paths = sorted([*args.traces.glob("*.csv"), *args.traces.glob("*.jsonl")])
    if not paths:
        print(f"no traces in {args.traces} (pass --traces DIR)", file=sys.stderr)
    for path in paths:
        run(path.name, load_trace(path, args.speed), args.timelines)
    if not args.no_synthetic:
        run("synthetic bursty (seed 1)", poisson_trace(BURSTY, seed=1), args.timelines)


if __name__ == "__main__":
    main()
