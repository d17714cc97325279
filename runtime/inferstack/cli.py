"""`inferstack ...`: the command line. Talks to the control plane's REST API (INFERSTACK_URL with the
key in INFERSTACK_API_KEY); `serve` runs the control plane and `keys create` writes to its store."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Column, Table

from inferstack.cli_apply import apply as apply_stack
from inferstack.cli_files import batch_app, files_app
from inferstack.cli_support import Api, Output, OutputOption, emit, err, fail, out
from inferstack.hardware import MODELS, PROFILES, smallest_fitting_gpus

app = typer.Typer(help="Dedicated, autoscaled, OpenAI-compatible LLM inference deployments.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="API keys (admin: writes to the control plane's store directly).")
app.add_typer(keys_app, name="keys")


# --- the control plane --------------------------------------------------------------------------
@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port to listen on.")) -> None:
    """Run the control plane: REST API, OpenAI-compatible gateway, controller and batch runner."""
    from inferstack.server import serve as run

    try:
        run(host, port)
    except ValueError as exc:  # a bad INFERSTACK_* setting: say which, without a traceback
        fail(f"cannot start the control plane: {exc}")


@keys_app.command("create")
def keys_create(tenant: str = typer.Option(..., "--tenant", help="Tenant of the key (created if new).")) -> None:
    """Create an API key; the key is printed alone on the last line (shown once, stored hashed)."""
    from inferstack.server import open_store
    from inferstack.settings import Settings

    store = open_store(Settings.from_env())
    tenant_id, key = store.create_key(tenant, time.time())
    err.print(f"Created a key for tenant {tenant} ({tenant_id}). Keep it: it is not shown again.")
    print(key)


# --- deployments --------------------------------------------------------------------------------
@app.command()
def create(
    model: str = typer.Argument(..., help="Hugging Face model id (or a local path for the vllm engine)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Name usable as `model` in OpenAI calls."),
    gpu: str = typer.Option("gpu.a100", "-g", "--gpu", help=f"Hardware profile: {', '.join(PROFILES)}."),
    engine: str = typer.Option("vllm", "--engine", help="vllm, or sim (simulated; for tests, not a model)."),
    task: str = typer.Option("generate", "--task", help="generate or embed."),
    gpus_per_replica: int = typer.Option(1, "--gpus-per-replica"),
    min_replicas: int = typer.Option(1, "--min-replicas"),
    max_replicas: int = typer.Option(1, "--max-replicas"),
    target_rps: float = typer.Option(10.0, "--target-rps", help="Requests/sec one replica should carry."),
    target_latency: float = typer.Option(5000, "--target-latency", help="p95 latency target, ms."),
    stabilisation: float = typer.Option(300, "--stabilisation", help="Scale-down stabilisation window, s."),
    idle_timeout: float = typer.Option(3600, "--idle-timeout", help="Pause after this many idle seconds."),
    max_model_len: int | None = typer.Option(None, "--max-model-len"),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="Extra engine flag (repeatable)."),
    hf_token: str | None = typer.Option(None, "-t", "--hf-token", help="Token for gated weights (write-only)."),
    wait: bool = typer.Option(False, "-w", "--wait", help="Wait until a replica is healthy."),
    output: Output = OutputOption,
) -> None:
    """Create a deployment."""
    body = {"hf_model_id": model, "name": name, "hardware_profile": gpu, "engine": engine, "task": task,
            "gpus_per_replica": gpus_per_replica, "min_replicas": min_replicas, "max_replicas": max_replicas,
            "target_rps": target_rps, "target_latency_p95_ms": target_latency,
            "stabilisation_window": stabilisation, "idle_timeout_s": idle_timeout,
            "max_model_len": max_model_len, "engine_args": engine_arg, "hf_token": hf_token}
    client = Api()
    deployment = client.call("POST", "/v1/deployments", json={k: v for k, v in body.items() if v is not None})
    if wait:
        deployment = wait_until_running(client, deployment["id"])
    emit(deployment, output, deployment_table([deployment]))


def wait_until_running(client: Api, deployment_id: str, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with out.status(f"Waiting for {deployment_id} to become ready...") as spinner:
        while True:
            deployment = client.call("GET", f"/v1/deployments/{deployment_id}")
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
    table = Table("ID", "NAME", "MODEL", "ENGINE", "PROFILE", "STATUS", "READY", "MIN..MAX", "COST USD")
    for d in deployments:
        spec = d["spec"]
        table.add_row(d["id"], d["name"], spec["hf_model_id"], spec["engine"], spec["hardware_profile"],
                      d["status"], f"{d['ready_replicas']}/{len(d['replicas'])}",
                      f"{spec['min_replicas']}..{spec['max_replicas']}", f"{d['cost']['usd']:.4f}")
    return table


@app.command("list")
def list_(output: Output = OutputOption) -> None:
    """List your deployments."""
    data = Api().call("GET", "/v1/deployments")["data"]
    emit(data, output, deployment_table(data))


@app.command()
def status(deployment: str = typer.Argument(..., help="Deployment id or name."),
           all_: bool = typer.Option(False, "--all", help="Include stopped and failed replicas."),
           output: Output = OutputOption) -> None:
    """A deployment's status, cost and replica health."""
    client = Api()
    info = client.call("GET", f"/v1/deployments/{deployment}")
    replicas = client.call("GET", f"/v1/deployments/{deployment}/replicas", params={"all": all_})["data"]
    if output is Output.json:
        emit({**info, "replicas": replicas}, output)
        return
    out.print(deployment_table([info]))
    if info["status_reason"]:
        out.print(f"reason: {info['status_reason']}")
    cost = info["cost"]
    out.print(f"cost: {cost['replica_seconds']:.0f} replica-seconds x {cost['price_per_replica_hour']:g} "
                  f"USD/hour = {cost['usd']:.4f} USD")
    table = Table("REPLICA", "STATUS", "IN FLIGHT", "ENGINE RUNNING/WAITING", "STARTED", "READY AFTER", "REASON")
    for r in replicas:
        ready_after = f"{r['ready_at'] - r['started_at']:.1f} s" if r["ready_at"] else "-"
        engine = f"{r['engine_running']}/{r['engine_waiting']}" if r.get("engine_running") is not None else "-"
        table.add_row(r["id"], r["status"], str(r["in_flight"]), engine, time.strftime("%H:%M:%S",
                      time.localtime(r["started_at"])), ready_after, r["reason"])
    out.print(table)


@app.command()
def update(
    deployment: str = typer.Argument(..., help="Deployment id or name."),
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
    body = {"min_replicas": min_replicas, "max_replicas": max_replicas, "target_rps": target_rps,
            "target_latency_p95_ms": target_latency, "stabilisation_window": stabilisation,
            "idle_timeout_s": idle_timeout, "hardware_profile": gpu, "hf_token": hf_token}
    body = {k: v for k, v in body.items() if v is not None}
    if immediate_scale_down:
        body["immediate_scale_down"] = True
    info = Api().call("PATCH", f"/v1/deployments/{deployment}", json=body)
    emit(info, output, deployment_table([info]))


def _action(deployment: str, action: str, output: Output) -> None:
    info = Api().call("POST", f"/v1/deployments/{deployment}/{action}")
    emit(info, output, deployment_table([info]))


@app.command()
def stop(deployment: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Stop all replicas; requests get a clear error until you resume (no auto-resume)."""
    _action(deployment, "stop", output)


@app.command()
def resume(deployment: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Resume a stopped, paused or failed deployment."""
    _action(deployment, "resume", output)


@app.command()
def delete(deployment: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Delete a deployment and stop its replicas."""
    emit(Api().call("DELETE", f"/v1/deployments/{deployment}"), output)


@app.command()
def events(deployment: str = typer.Argument(...), limit: int = typer.Option(50, "--limit"),
           output: Output = OutputOption) -> None:
    """Why it scaled, paused or failed: the deployment's record, with the numbers behind each change."""
    data = Api().call("GET", f"/v1/deployments/{deployment}/events", params={"limit": limit})["data"]
    table = Table("TIME", "KIND", "WHAT HAPPENED")
    for e in data:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["kind"], e["message"])
    emit(data, output, table)


@app.command()
def models(output: Output = OutputOption) -> None:
    """The built-in model catalogue: the fewest GPUs per replica each model needs on each profile."""
    gpu_profiles = [p for p in PROFILES.values() if p.name != "cpu"]
    rows = []
    for model in MODELS.values():
        fits = {p.name: smallest_fitting_gpus(model, p) for p in gpu_profiles}
        rows.append({"hf_model_id": model.hf_model_id, "params_billion": model.params_billion,
                     "task": model.task, "weights_gb": round(model.weights_gb, 1), "gpus_per_replica": fits})
    table = Table(Column("MODEL", no_wrap=True), "PARAMS (B)", "BF16 GB",
                  *(p.name.removeprefix("gpu.") for p in gpu_profiles))
    for row in rows:
        table.add_row(row["hf_model_id"], f"{row['params_billion']:g}", f"{row['weights_gb']:g}",
                      *(str(g) if (g := row["gpus_per_replica"][p.name]) else "-" for p in gpu_profiles))
    emit(rows, output, table)
    if output is Output.table:
        out.print("Cells: GPUs per replica needed (bf16 weights + KV cache headroom); '-' = does not fit.")


@app.command()
def chat(deployment: str = typer.Option(..., "-d", "--deployment", help="Deployment id or name."),
         prompt: str = typer.Option(..., "-p", "--prompt"),
         max_tokens: int = typer.Option(256, "--max-tokens")) -> None:
    """Send one chat message and stream the answer."""
    client = Api()
    body = {"model": deployment, "messages": [{"role": "user", "content": prompt}], "stream": True,
            "max_tokens": max_tokens}
    with client.http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code >= 400:
            response.read()
            client.check(response)
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                fail(chunk["error"].get("message", "error"))
            for choice in chunk.get("choices", []):
                out.print(choice.get("delta", {}).get("content") or "", end="", markup=False,
                              highlight=False)
    out.print()


@app.command()
def demo(engine: str = typer.Option("sim", "--engine", help="sim (built-in simulator) or vllm (real vLLM)."),
         keep: bool = typer.Option(False, "--keep", help="Leave the control plane running afterwards.")) -> None:
    """Run the local demo: a control plane, a deployment, and chat through the official openai client."""
    from inferstack.demo import run_demo

    run_demo(engine, keep)


app.add_typer(files_app, name="files")
app.add_typer(batch_app, name="batch")
app.command("apply")(apply_stack)
