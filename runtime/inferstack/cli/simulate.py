"""`inferstack simulate`, `tune` and `calibrate`: the autoscaler on a request trace, in virtual time.

The deployment is the default spec (a sim-engine replica), a stack file's deployment (`--stack`,
`--deployment`) and `--set field=value` on top, in that order. The replica is `ReplicaProfile`'s
default or a profile `inferstack calibrate` wrote (`--profile`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from inferstack.cli.output import App, err, fail
from inferstack.declared.stackfile import StackFileError, load_stack_file
from inferstack.simulate.calibrate import Measurement, fit_profile
from inferstack.simulate.compare import compare
from inferstack.simulate.replica_model import ReplicaProfile
from inferstack.simulate.report import table
from inferstack.simulate.sizing import sized
from inferstack.simulate.timeline import render_html
from inferstack.simulate.timeline_png import MissingPlotting, render_png
from inferstack.simulate.trace import TraceRequest, load_trace
from inferstack.simulate.tune import stack_snippet, tune
from inferstack.simulate.world import Replay, World
from inferstack.spec import DeploymentSpec

app = App()

DEFAULT_SPEC: dict[str, Any] = {"hf_model_id": "trace/replay", "engine": "sim", "hardware_profile": "gpu.l4",
                                "max_replicas": 16}

TraceArg = Annotated[Path, typer.Argument(help="Azure CSV (TIMESTAMP, ContextTokens, GeneratedTokens) or JSONL.",
                                          exists=True, dir_okay=False)]
StackOpt = Annotated[Path | None, typer.Option("--stack", help="Take the deployment from this stack file.")]
NameOpt = Annotated[str | None, typer.Option("--deployment", help="Its name in the stack file (default: first).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="A spec field, e.g. --set target_rps=4 (repeatable).")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", help="Replica profile JSON (inferstack calibrate).")]
SpeedOpt = Annotated[float, typer.Option("--speed", help="Replay this many times faster than recorded.")]
DurationOpt = Annotated[float | None, typer.Option("--duration-s", help="Replay only this much of the trace.")]
AutoOpt = Annotated[bool, typer.Option("--auto-targets/--no-auto-targets",
                                       help="target_rps and target_latency_p95_ms from the trace and the profile, "
                                            "unless set.")]


def _inputs(trace_path: Path, stack: Path | None, name: str | None, sets: list[str] | None,
            profile_path: Path | None, speed: float, duration: float | None,
            auto: bool) -> tuple[list[TraceRequest], DeploymentSpec, ReplicaProfile]:
    try:
        trace = load_trace(trace_path, speed, duration)
        profile = ReplicaProfile.model_validate_json(profile_path.read_text()) if profile_path else ReplicaProfile()
        fields = dict(DEFAULT_SPEC)
        if stack is not None:
            deployments = load_stack_file(stack).deployments
            chosen = [d for d in deployments if name is None or d.name == name]
            if not chosen:
                fail(f"no deployment {name!r} in {stack}")
            fields = chosen[0].model_dump(exclude={"hf_token"})
        given = dict(_field(s) for s in sets or ())
        spec = DeploymentSpec.model_validate({**fields, **given})
    except (OSError, ValueError, ValidationError, StackFileError) as exc:
        fail(str(exc))
    keep = set(given) | ({"target_rps", "target_latency_p95_ms"} if stack is not None else set())
    return trace, sized(spec, trace, profile, keep) if auto else spec, profile


def _field(assignment: str) -> tuple[str, Any]:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set takes field=value, got {assignment!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


@app.command()
def simulate(trace: TraceArg, stack: StackOpt = None, deployment: NameOpt = None, set_: SetOpt = None,
             profile: ProfileOpt = None, speed: SpeedOpt = 1.0, duration_s: DurationOpt = None,
             auto_targets: AutoOpt = True,
             baselines: Annotated[bool, typer.Option("--baselines", help="Also replay the baselines.")] = False,
             timeline: Annotated[Path | None, typer.Option(
                 "--timeline", help="Draw the replay to this file: .png (needs the plot extra), else HTML.")] = None,
             events: Annotated[int, typer.Option("--events", help="Print this many scale events.")] = 20) -> None:
    """Replay a trace against a deployment in virtual time: SLO attainment, replica-hours, cost, events."""
    requests, spec, replica = _inputs(trace, stack, deployment, set_, profile, speed, duration_s, auto_targets)
    started = time.process_time()
    rows = compare(requests, spec, replica, with_baselines=baselines)
    err.print(f"{len(requests)} requests, target p95 {spec.target_latency_p95_ms:g} ms, target_rps "
              f"{spec.target_rps:g}, {time.process_time() - started:.1f} s of CPU")
    typer.echo(table(rows))
    if events or timeline:
        replay = World(spec, replica).run(requests)
        for e in replay.events[:events]:
            typer.echo(f"{e.at:8.1f} s  {e.before} -> {e.after} ({e.rule}): {e.reason}")
        if timeline:
            draw(replay, spec.target_latency_p95_ms, trace.name, timeline)
            err.print(f"timeline written to {timeline}")


def draw(replay: Replay, target_ms: float, title: str, path: Path) -> None:
    """The timeline to `path`: a PNG for .png, else the HTML page."""
    if path.suffix.lower() != ".png":
        path.write_text(render_html(replay, target_ms, title))
        return
    try:
        render_png(replay, target_ms, title, path)
    except MissingPlotting as exc:
        fail(str(exc))


@app.command("tune")
def tune_command(trace: Annotated[Path, typer.Option("--trace", exists=True, dir_okay=False, help="The trace.")],
                 stack: StackOpt = None, deployment: NameOpt = None, set_: SetOpt = None,
                 profile: ProfileOpt = None, speed: SpeedOpt = 1.0, duration_s: DurationOpt = None,
                 auto_targets: AutoOpt = True) -> None:
    """Search the scaling fields for the cheapest setting that meets the SLO on a trace; print it as a
    stack-file snippet."""
    requests, spec, replica = _inputs(trace, stack, deployment, set_, profile, speed, duration_s, auto_targets)
    best, trials = tune(requests, spec, replica)
    err.print(f"{len(trials)} settings replayed")
    if best is None:
        fail(f"no setting tried keeps 99% of requests inside {spec.target_latency_p95_ms:g} ms: raise the "
             "target or max_replicas")
    s = best.summary
    err.print(f"cheapest: {s.replica_hours:.2f} replica-hours, {s.inside_target:.2%} inside target, "
              f"{s.oracle_ratio:.2f}x the oracle")
    typer.echo(stack_snippet(deployment or spec.name or "tuned", spec, best.fields))


@app.command()
def calibrate(
    url: Annotated[str, typer.Option("--url", help="Base URL of a replica or the control plane (…/v1).")],
    model: Annotated[str, typer.Option("--model", help="Model or deployment name to call.")],
    api_key: Annotated[str, typer.Option("--api-key", envvar="INFERSTACK_API_KEY", help="Bearer key.")] = "none",
    concurrency: Annotated[str, typer.Option("--concurrency", help="Levels to measure, comma separated.")] = "1,4,16",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=2)] = 32,
    startup_s: Annotated[float, typer.Option("--startup-s", help="The replica's start-up (measured apart).")] = 70.0,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the profile JSON here.")] = None,
) -> None:
    """Measure time to first token and time per output token against concurrency; fit a replica profile."""
    levels = sorted({int(c) for c in concurrency.split(",") if c.strip()})
    measurements = asyncio.run(_measure(url, api_key, model, levels, max_tokens))
    fitted = fit_profile(measurements, startup_s)
    text = fitted.model_dump_json(indent=2)
    if out_path:
        out_path.write_text(text)
    typer.echo(text)


async def _measure(url: str, api_key: str, model: str, levels: list[int], max_tokens: int) -> list[Measurement]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key=api_key, max_retries=0)

    async def one(level: int) -> Measurement:
        start = time.perf_counter()
        first, tokens = None, 0
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Count slowly."}], max_tokens=max_tokens,
            stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                tokens += 1
        end = time.perf_counter()
        first = first or end
        return Measurement(level, first - start, (end - first) / max(1, tokens - 1))

    try:
        results: list[Measurement] = []
        for level in levels:
            results += await asyncio.gather(*(one(level) for _ in range(level)))
        return results
    finally:
        await client.close()
