"""`inferstack create|list|status|update|stop|resume|delete|events|models|chat`: deployments.

Options default to "not given": only what the user typed is sent, so the spec's defaults
(`inferstack.spec`) are the only defaults, and the help shows them from there.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from inferstack.cli.adapters import adapter_table
from inferstack.cli.output import (
    App,
    Output,
    OutputOption,
    control_plane,
    emit,
    fail,
    given,
    id_column,
    out,
    print_table,
)
from inferstack.client import ControlPlaneClient
from inferstack.hardware import MODELS, PROFILES, smallest_fitting_gpus
from inferstack.settings import ClientSettings, Env
from inferstack.spec import DeploymentSpec

app = App()


def _default(field: str) -> str:
    return f"(spec default: {DeploymentSpec.model_fields[field].default})"


@app.command()
def create(
    model: str = typer.Argument(..., metavar="MODEL",
                                help="Hugging Face model id (or a local path for the vllm engine)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Name usable as `model` in OpenAI calls."),
    gpu: str | None = typer.Option(None, "-g", "--gpu",
                                   help=f"Hardware profile: {', '.join(PROFILES)}. {_default('hardware_profile')}"),
    engine: str | None = typer.Option(None, "--engine",
                                      help=f"vllm, or sim (simulated; for tests, not a model). {_default('engine')}"),
    task: str | None = typer.Option(None, "--task", help=f"generate or embed. {_default('task')}"),
    gpus_per_replica: int | None = typer.Option(None, "--gpus-per-replica", help=_default("gpus_per_replica")),
    min_replicas: int | None = typer.Option(None, "--min-replicas", help=_default("min_replicas")),
    max_replicas: int | None = typer.Option(None, "--max-replicas", help=_default("max_replicas")),
    target_rps: float | None = typer.Option(None, "--target-rps",
                                            help=f"Requests/sec one replica should carry. {_default('target_rps')}"),
    target_latency: float | None = typer.Option(
        None, "--target-latency", help=f"p95 latency target, ms. {_default('target_latency_p95_ms')}"),
    stabilisation: float | None = typer.Option(
        None, "--stabilisation", help=f"Scale-down stabilisation window, s. {_default('stabilisation_window')}"),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", help=f"Pause after this many idle seconds. {_default('idle_timeout_s')}"),
    max_model_len: int | None = typer.Option(None, "--max-model-len"),
    engine_arg: list[str] | None = typer.Option(None, "--engine-arg", help="Extra engine flag (repeatable)."),
    hf_token: str | None = typer.Option(None, "-t", "--hf-token", help="Token for gated weights (write-only)."),
    wait: bool = typer.Option(False, "-w", "--wait", help="Wait until a replica is healthy."),
    output: Output = OutputOption,
) -> None:
    """Create a deployment."""
    body = given(hf_model_id=model, name=name, hardware_profile=gpu, engine=engine, task=task,
                 gpus_per_replica=gpus_per_replica, min_replicas=min_replicas, max_replicas=max_replicas,
                 target_rps=target_rps, target_latency_p95_ms=target_latency, stabilisation_window=stabilisation,
                 idle_timeout_s=idle_timeout, max_model_len=max_model_len, engine_args=engine_arg, hf_token=hf_token)
    with control_plane() as client:
        deployment = client.create_deployment(body)
        if wait:
            deployment = wait_until_running(client, deployment["id"])
    emit(deployment, output, deployment_table([deployment]))


def wait_until_running(client: ControlPlaneClient, deployment_id: str, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with out.status(f"Waiting for {deployment_id} to become ready...") as spinner:
        while True:
            deployment = client.get_deployment(deployment_id)
            if deployment["status"] == "running":
                return deployment
            if deployment["status"] in ("failed", "stopped", "deleted"):
                fail(f"deployment {deployment_id} is {deployment['status']}: {deployment['status_reason']}")
            if time.monotonic() > deadline:
                fail(f"deployment {deployment_id} not ready after {timeout_s:g} s")
            starting = sum(1 for r in deployment["replicas"] if r["status"] == "starting")
            spinner.update(f"{deployment_id}: {deployment['status']}, {starting} replica(s) starting...")
            time.sleep(1)


def deployment_table(deployments: list[dict[str, Any]]) -> Table:
    table = Table(id_column("ID"), "NAME", id_column("MODEL"), "ENGINE", "PROFILE", "STATUS", "READY", "MIN..MAX",
                  "COST USD")
    for d in deployments:
        spec = d["spec"]
        table.add_row(d["id"], d["name"], spec["hf_model_id"], spec["engine"], spec["hardware_profile"],
                      d["status"], f"{d['ready_replicas']}/{len(d['replicas'])}",
                      f"{spec['min_replicas']}..{spec['max_replicas']}", f"{d['cost']['usd']:.4f}")
    return table


@app.command("list")
def list_(output: Output = OutputOption) -> None:
    """List your deployments."""
    with control_plane() as client:
        data = client.list_deployments()
    emit(data, output, deployment_table(data))


DeploymentArgument = typer.Argument(..., metavar="DEPLOYMENT", help="Deployment id or name.")


@app.command()
def status(deployment: str | None = typer.Argument(None, metavar="DEPLOYMENT",
                                                   help="Deployment id or name; without it, all of yours."),
           all_: bool = typer.Option(False, "--all", help="Include stopped deployments (with DEPLOYMENT: stopped "
                                                          "and failed replicas)."),
           output: Output = OutputOption) -> None:
    """A deployment's status, cost and replica health; without DEPLOYMENT, every deployment that is not
    stopped (with --all, the stopped ones too)."""
    if deployment is None:
        with control_plane() as client:
            data = [d for d in client.list_deployments() if all_ or d["status"] != "stopped"]
        emit(data, output, deployment_table(data))
        return
    with control_plane() as client:
        info = client.get_deployment(deployment)
        replicas = client.list_replicas(deployment, include_stopped=all_)
    if output is Output.json:
        emit({**info, "replicas": replicas}, output)
        return
    print_table(deployment_table([info]))
    if info["status_reason"]:
        out.print(f"reason: {info['status_reason']}")
    cost = info["cost"]
    out.print(f"cost: {cost['replica_seconds']:.0f} replica-seconds x {cost['price_per_replica_hour']:g} "
              f"USD/hour = {cost['usd']:.4f} USD")
    if info.get("metrics"):
        out.print(traffic_line(info["metrics"]))
    table = Table(id_column("REPLICA"), "STATUS", "WHERE", "IN FLIGHT", "ENGINE RUNNING/WAITING", "STARTED",
                  "READY AFTER", "REASON")
    for r in replicas:
        ready_after = f"{r['ready_at'] - r['started_at']:.1f} s" if r["ready_at"] else "-"
        engine = f"{r['engine_running']}/{r['engine_waiting']}" if r.get("engine_running") is not None else "-"
        where = f"{r.get('provider') or '-'}{' (burst)' if r.get('burst') else ''}"
        table.add_row(r["id"], r["status"], where, str(r["in_flight"]), engine, time.strftime("%H:%M:%S",
                      time.localtime(r["started_at"])), ready_after, r["reason"])
    print_table(table)
    if info.get("adapters"):
        print_table(adapter_table(info["adapters"]))


def traffic_line(metrics: dict[str, Any]) -> str:
    """The leader's merged window in one line, e.g. `traffic (2 instances reporting, 14:02:07): 3.5 arrivals/s,
    3.4 completions/s, 2 in flight, p50/p95 latency 120/310 ms, p50/p95 TTFT 40/90 ms, 210 completed, 0 failed`."""
    def pair(p50: float | None, p95: float | None) -> str:
        return "-" if p50 is None or p95 is None else f"{p50:.0f}/{p95:.0f} ms"

    reporting = metrics["instances_reporting"]
    return (f"traffic ({reporting} instance{'s' if reporting != 1 else ''} reporting, "
            f"{time.strftime('%H:%M:%S', time.localtime(metrics['at']))}): "
            f"{metrics['arrivals_per_s']:.2f} arrivals/s, {metrics['completions_per_s']:.2f} completions/s, "
            f"{metrics['in_flight']} in flight, "
            f"p50/p95 latency {pair(metrics['p50_latency_ms'], metrics['p95_latency_ms'])}, "
            f"p50/p95 TTFT {pair(metrics['p50_ttft_ms'], metrics['p95_ttft_ms'])}, "
            f"{metrics['completed']} completed, {metrics['failed']} failed")


@app.command()
def update(
    deployment: str = DeploymentArgument,
    min_replicas: int | None = typer.Option(None, "--min-replicas"),
    max_replicas: int | None = typer.Option(None, "--max-replicas"),
    target_rps: float | None = typer.Option(None, "--target-rps"),
    target_latency: float | None = typer.Option(None, "--target-latency"),
    stabilisation: float | None = typer.Option(None, "--stabilisation"),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout"),
    gpu: str | None = typer.Option(None, "-g", "--gpu"),
    hf_token: str | None = typer.Option(None, "-t", "--hf-token"),
    immediate_scale_down: bool = typer.Option(False, "--immediate-scale-down",
                                              help="Skip the stabilisation window once."),
    output: Output = OutputOption,
) -> None:
    """Change a deployment's spec."""
    body = given(min_replicas=min_replicas, max_replicas=max_replicas, target_rps=target_rps,
                 target_latency_p95_ms=target_latency, stabilisation_window=stabilisation,
                 idle_timeout_s=idle_timeout, hardware_profile=gpu, hf_token=hf_token,
                 immediate_scale_down=immediate_scale_down or None)
    with control_plane() as client:
        info = client.update_deployment(deployment, body)
    emit(info, output, deployment_table([info]))


@app.command()
def stop(deployment: str = DeploymentArgument, output: Output = OutputOption) -> None:
    """Stop all replicas; requests get a clear error until you resume (no auto-resume)."""
    with control_plane() as client:
        info = client.deployment_action(deployment, "stop")
    emit(info, output, deployment_table([info]))


@app.command()
def resume(deployment: str = DeploymentArgument, output: Output = OutputOption) -> None:
    """Resume a stopped, paused or failed deployment."""
    with control_plane() as client:
        info = client.deployment_action(deployment, "resume")
    emit(info, output, deployment_table([info]))


@app.command()
def delete(deployment: str = DeploymentArgument, output: Output = OutputOption) -> None:
    """Delete a deployment and stop its replicas."""
    with control_plane() as client:
        deleted = client.delete_deployment(deployment)
    if output is Output.json:
        emit(deleted, output)
    else:
        out.print(f"deleted {deleted['deployment_id']}", highlight=False)


@app.command()
def events(deployment: str = DeploymentArgument, limit: int = typer.Option(50, "--limit"),
           output: Output = OutputOption) -> None:
    """Why it scaled, paused or failed: the deployment's record, with the numbers behind each change."""
    with control_plane() as client:
        data = client.list_events(deployment, limit=limit)
    table = Table("TIME", "KIND", "WHAT HAPPENED")
    for e in data:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["kind"], e["message"])
    emit(data, output, table)


@app.command()
def logs(deployment: str = typer.Argument(..., help="Deployment id or name."),
         replica: str | None = typer.Argument(None, help="A replica id; without one, the most recent replicas."),
         tail: int = typer.Option(100, "--tail", "-n", min=1, help="How many of the last lines."),
         output: Output = OutputOption) -> None:
    """What the replicas wrote (a failed start's cause, say): the last lines, secrets redacted."""
    with control_plane() as client:
        data = client.replica_logs(deployment, replica, tail=tail)
    if output is Output.json:
        emit(data, output)
        return
    for entry in data:
        out.print(f"==> {entry['replica_id']} ({entry['status']})", markup=False)
        for line in entry["lines"]:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        if entry["unavailable"]:
            out.print(f"(no log: {entry['unavailable']})", markup=False)


@app.command()
def models(output: Output = OutputOption) -> None:
    """The model catalogue (the fewest GPUs per replica each model needs on each profile) and your deployments
    (what `model` takes in OpenAI calls; needs INFERSTACK_API_KEY)."""
    gpu_profiles = [p for p in PROFILES.values() if p.name != "cpu"]
    rows = []
    for model in MODELS.values():
        fits = {p.name: smallest_fitting_gpus(model, p) for p in gpu_profiles}
        rows.append({"hf_model_id": model.hf_model_id, "params_billion": model.params_billion,
                     "task": model.task, "weights_gb": round(model.weights_gb, 1), "gpus_per_replica": fits})
    deployed: list[dict[str, Any]] | None = None
    if ClientSettings.from_env().api_key:
        with control_plane() as client:
            deployed = client.list_models()
    if output is Output.json:
        emit({"catalogue": rows, "deployments": deployed or []}, output)
        return
    table = Table(id_column("MODEL"), "PARAMS (B)", "BF16 GB", *(p.name.removeprefix("gpu.") for p in gpu_profiles),
                  title="Catalogue")
    for row in rows:
        table.add_row(row["hf_model_id"], f"{row['params_billion']:g}", f"{row['weights_gb']:g}",
                      *(str(g) if (g := row["gpus_per_replica"][p.name]) else "-" for p in gpu_profiles))
    print_table(table)
    out.print("Cells: GPUs per replica needed (bf16 weights + KV cache headroom); '-' = does not fit.")
    if deployed is None:
        out.print(f"Set {Env.API_KEY} to list your deployments too.")
        return
    mine = Table(id_column("ID"), id_column("NAME"), id_column("MODEL"), "TASK", "STATUS", title="Your deployments")
    for m in deployed:
        mine.add_row(m["id"], m.get("name", ""), m.get("root", ""), m.get("task", ""), m.get("status", ""))
    print_table(mine)


@app.command()
def chat(deployment: str = typer.Option(..., "-d", "--deployment", help="Deployment id or name."),
         prompt: str = typer.Option(..., "-p", "--prompt"),
         max_tokens: int = typer.Option(256, "--max-tokens")) -> None:
    """Send one chat message and stream the answer."""
    body = {"model": deployment, "messages": [{"role": "user", "content": prompt}], "stream": True,
            "max_tokens": max_tokens}
    with control_plane() as client:
        for line in client.stream_chat(body):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                fail(chunk["error"].get("message", "error"))
            for choice in chunk.get("choices", []):
                out.print(choice.get("delta", {}).get("content") or "", end="", markup=False, highlight=False)
    out.print()
