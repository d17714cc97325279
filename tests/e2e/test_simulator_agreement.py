"""The simulator agrees with a live run: a short trace replayed against `sim` replicas through a real
control plane (the official openai client, time compressed into ~25 s) and in the simulator (the same
spec, the replica profile from the same sim flags, the start-up measured live) give replica-seconds
and SLO attainment within 10% of each other."""

from __future__ import annotations

import asyncio
import subprocess
import time

import openai
import pytest

from inferstack.engines.sim.config import SimConfig
from inferstack.simulate.replica_model import ReplicaProfile
from inferstack.simulate.report import summarise
from inferstack.simulate.synthetic import poisson_trace
from inferstack.simulate.trace import TraceRequest
from inferstack.simulate.world import World
from inferstack.spec import DeploymentSpec
from support import INFERSTACK, SIM_SPEC, ControlPlane, wait_for, wait_running

SIM_FLAGS = {"ttft_ms": 50.0, "tokens_per_s": 40.0, "max_concurrency": 4}
SPEC = {
    **SIM_SPEC, "name": "replayed", "min_replicas": 1, "max_replicas": 3, "target_rps": 4.0,
    "target_latency_p95_ms": 1500, "metrics_window_s": 3, "panic_window_s": 1, "stabilisation_window": 4,
    "idle_timeout_s": 600, "max_queue_wait_s": 60,
    "engine_args": ["--ttft-ms", "50", "--tokens-per-s", "40", "--max-concurrency", "4"],
}
# ~0.5 s a request (20 tokens at 40/s): one replica of 4 slots carries ~7.6 rps; the 14-rps middle needs 2-3.
TRACE = [TraceRequest(r.arrival_s, r.prompt_tokens, 20)
         for r in poisson_trace([(6, 2.0), (10, 14.0), (8, 2.0)], seed=11, prompt_tokens=20, output_tokens=20)]


async def replay_live(client: openai.AsyncOpenAI) -> list[float]:
    """Send each request at its time; the latency each one saw, in seconds."""
    start = time.perf_counter()

    async def one(request: TraceRequest) -> float:
        await asyncio.sleep(max(0.0, start + request.arrival_s - time.perf_counter()))
        sent = time.perf_counter()
        await client.chat.completions.create(model="replayed", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=request.output_tokens)
        return time.perf_counter() - sent

    return list(await asyncio.gather(*(one(r) for r in TRACE)))


def test_a_live_replay_and_the_simulator_agree_within_10_percent(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("replay")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json=SPEC).json()
    view = wait_running(rest, dep["id"])
    first = next(r for r in view["replicas"] if r["ready_at"])
    startup_s = first["ready_at"] - first["started_at"]  # the live replica's start-up, for the profile
    before = rest.get(f"/v1/deployments/{dep['id']}").json()["cost"]["replica_seconds"]
    began = time.time()
    client = openai.AsyncOpenAI(base_url=control_plane.url + "/v1", api_key=key, max_retries=0, timeout=60)
    latencies = asyncio.run(replay_live(client))
    span = time.time() - began
    wait_for(lambda: rest.get(f"/v1/deployments/{dep['id']}").json()["cost"]["replica_seconds"] > before,
             timeout=10, what="replica-seconds accounted")
    live_seconds = rest.get(f"/v1/deployments/{dep['id']}").json()["cost"]["replica_seconds"] - before
    scaled = [e for e in rest.get(f"/v1/deployments/{dep['id']}/events").json()["data"] if e["kind"] == "scaled"]
    live_inside = sum(1 for s in latencies if s * 1000 <= SPEC["target_latency_p95_ms"]) / len(latencies)

    spec = DeploymentSpec.model_validate(SPEC)
    profile = ReplicaProfile.from_sim_config(SimConfig(served_model_names=("m",), **SIM_FLAGS)).model_copy(
        update={"startup_s": startup_s})
    replay = World(spec, profile, tick_s=0.1, warm_start=False).run(TRACE)
    simulated = summarise("simulated", replay, spec, startup_s)
    # The live count runs until the last answer came back (`span`); the simulator's until the last completion.
    live_rate = live_seconds / span
    sim_rate = replay.replica_seconds / replay.end_s
    detail = (f"live {live_seconds:.1f} replica-s over {span:.1f} s, {live_inside:.1%} inside; simulated "
              f"{replay.replica_seconds:.1f} over {replay.end_s:.1f} s, {simulated.inside_target:.1%}; live scaled "
              f"{[(e['data'].get('before'), e['data'].get('after')) for e in scaled]}, simulated "
              f"{[(e.before, e.after) for e in replay.events]}")
    print(detail)  # the figures, for the record (pytest -s)
    assert replay.events, "the trace must make the simulator scale, or the comparison shows nothing"
    assert abs(live_rate - sim_rate) <= 0.1 * sim_rate, detail
    assert abs(live_inside - simulated.inside_target) <= 0.1 * simulated.inside_target, detail


def test_calibrate_measures_a_live_sim_replica(control_plane: ControlPlane) -> None:
    """`inferstack calibrate` through the control plane: the fitted profile is the sim's flags (50 ms to the
    first token, 40 tokens/s = 25 ms a token), give or take the HTTP path on a loaded machine."""
    key = control_plane.create_key("calibrate")
    rest = control_plane.client(key)
    dep = rest.post("/v1/deployments", json={**SPEC, "name": "measured", "max_replicas": 1}).json()
    wait_running(rest, dep["id"])
    result = subprocess.run([INFERSTACK, "calibrate", "--url", control_plane.url + "/v1", "--model", "measured",
                             "--api-key", key, "--concurrency", "1,4", "--max-tokens", "16"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    profile = ReplicaProfile.model_validate_json(result.stdout)
    assert 0.05 <= profile.ttft_s < 0.3, profile
    assert profile.decode_s_per_token == pytest.approx(0.025, rel=0.2), profile
