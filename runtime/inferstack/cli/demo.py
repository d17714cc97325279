"""`inferstack demo`: the whole product on this machine, in one command, with no cloud account.

Starts a control plane (local provider, SQLite), creates a deployment, waits for a healthy replica,
then talks to it with the official `openai` client (a chat completion and a streamed one). On the sim
engine it then shows the scaling: a burst that scales the deployment up, the idle pause to zero, and a
request that wakes it; and prints what happened: status, cost and the scaling record with its reasons.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.console import Console
from rich.panel import Panel

from inferstack.client import ControlPlaneClient, ControlPlaneError
from inferstack.providers.local import free_port
from inferstack.settings import Env, Settings

console = Console()
TINY_LLAMA = Path(__file__).parents[1] / "engines" / "tiny_llama.py"

# The deployment's own scaling fields, set short so the whole cycle fits in a minute: one replica carries
# 2 req/s, so a 12 req/s burst asks for 3; 8 idle seconds pause it; a 10 s window forgets the burst soon.
SIM_SCALING = {"min_replicas": 1, "max_replicas": 3, "target_rps": 2, "metrics_window_s": 10,
               "stabilisation_window": 5, "idle_timeout_s": 8}
BURST_RPS, BURST_S = 12, 4


def run_demo(engine: str, keep: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="inferstack-demo-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, Env.HOME: str(home), Env.URL: url}
    console.print(Panel.fit(f"inferstack demo: control plane at {url}, state in {home}\n"
                            f"engine: {engine_description(engine)}"))
    server = subprocess.Popen([sys.executable, "-m", "inferstack", "serve", "--port", str(port)], env=env,
                              stdout=(home / "serve.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, server)
        key = subprocess.run([sys.executable, "-m", "inferstack", "keys", "create", "--tenant", "demo"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        console.print("[green]✓[/green] control plane up; API key created for tenant 'demo'")
        client = ControlPlaneClient(url, key)
        try:
            deployment = client.create_deployment(deployment_body(engine, home))
        except ControlPlaneError as exc:
            raise SystemExit(f"create failed: {exc.describe()}") from None
        console.print(f"[green]✓[/green] deployment {deployment['id']} ({deployment['name']}) created")
        started = time.monotonic()
        with console.status("waiting for a healthy replica (vLLM takes about a minute on 2 CPU cores)..."):
            while (info := client.get_deployment(deployment["id"]))["status"] != "running":
                if info["status"] == "failed":
                    raise SystemExit(f"deployment failed: {info['status_reason']}")
                time.sleep(0.5)
        console.print(f"[green]✓[/green] replica ready after {time.monotonic() - started:.1f} s")
        talk(url, key, deployment["name"])
        if engine == "sim":
            show_scaling(client, url, key, deployment["id"], deployment["name"])
        show_record(client, deployment["id"])
        if keep:
            console.print(f"Control plane left running at {url}; {Env.API_KEY}={key}. Ctrl-C to stop.")
            server.wait()
    finally:
        server.terminate()
        server.wait(30)
        console.print("[green]✓[/green] control plane stopped; its replicas stopped with it")


def engine_description(engine: str) -> str:
    if engine == "sim":
        return "sim (the built-in simulated vLLM-compatible server: no model, no GPU; see README to use vLLM)"
    return "vllm (real vLLM on this CPU, serving a tiny random-weight Llama built locally: the text is noise)"


def deployment_body(engine: str, home: Path) -> dict[str, object]:
    if engine == "sim":
        # Each request holds its replica ~0.5 s (first token after 200 ms, 24 tokens at 80/s).
        return {"name": "demo-chat", "hf_model_id": "inferstack/sim", "engine": "sim", "hardware_profile": "cpu",
                "engine_args": ["--ttft-ms", "200", "--tokens-per-s", "80"], **SIM_SCALING}
    python = Settings.from_env().vllm_python
    if not python:
        raise SystemExit(f"engine vllm needs {Env.VLLM_PYTHON} (run `bash .ci/demo --vllm`, which builds it)")
    model_dir = home / "tiny-llama"
    subprocess.run([python, str(TINY_LLAMA), str(model_dir)], check=True, capture_output=True)
    return {"name": "demo-chat", "hf_model_id": str(model_dir), "engine": "vllm", "hardware_profile": "cpu",
            "max_model_len": 256, "engine_args": ["--dtype", "bfloat16", "--enforce-eager"]}


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with ControlPlaneClient(url, timeout=httpx.Timeout(1.0)) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit("the control plane exited; see serve.log in the demo's state directory")
            if client.healthy():
                return
            time.sleep(0.2)
    raise SystemExit("the control plane did not come up within 60 s")


def talk(url: str, key: str, model: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key)
    question = "In one sentence, why do held requests matter when a deployment wakes from zero?"
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            max_tokens=24)
    console.print(Panel(answer.choices[0].message.content or "", title=f"chat completion {answer.id}",
                        subtitle=f"{answer.usage.prompt_tokens if answer.usage else '?'} prompt + "
                                 f"{answer.usage.completion_tokens if answer.usage else '?'} completion tokens"))
    console.print("[bold]streamed:[/bold] ", end="")
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                max_tokens=24, stream=True):
        if chunk.choices:
            console.print(chunk.choices[0].delta.content or "", end="", markup=False, highlight=False)
    console.print()


def show_record(client: ControlPlaneClient, deployment_id: str) -> None:
    info = client.get_deployment(deployment_id)
    console.print(f"status {info['status']}, {info['ready_replicas']} ready replica(s), "
                  f"cost so far {info['cost']['usd']:.6f} USD")
    for event in client.list_events(deployment_id, limit=100):
        console.print(f"  [dim]{time.strftime('%H:%M:%S', time.localtime(event['at']))}[/dim] "
                      f"{event['kind']}: {event['message']}")


def show_scaling(client: ControlPlaneClient, url: str, key: str, deployment_id: str, model: str) -> None:
    """Burst -> scale up; idle -> pause at zero; one request -> wake. Each step waits on the deployment's
    own status, so the timings printed are the control plane's."""
    console.print(f"[bold]burst:[/bold] {BURST_RPS} req/s for {BURST_S} s against a target of "
                  f"{SIM_SCALING['target_rps']} req/s per replica (max_replicas {SIM_SCALING['max_replicas']})")
    began = time.monotonic()
    answered = asyncio.run(burst(url, key, model))
    most = wait_until(client, deployment_id, lambda d: len(d["replicas"]) >= 2, timeout_s=20)
    peak = len(most["replicas"]) if most else 1
    console.print(f"[green]✓[/green] {answered}/{BURST_RPS * BURST_S} answered; scaled to {peak} replicas "
                  f"{time.monotonic() - began:.1f} s after the burst began")
    quiet = time.monotonic()
    with console.status(f"idle: waiting for the pause at zero (idle_timeout_s {SIM_SCALING['idle_timeout_s']})..."):
        paused = wait_until(client, deployment_id, lambda d: d["status"] == "paused", timeout_s=45)
    if paused is None:
        raise SystemExit("the deployment did not pause; see `inferstack events`")
    console.print(f"[green]✓[/green] paused at 0 replicas after {time.monotonic() - quiet:.1f} s without requests")
    woke = time.monotonic()
    reply = openai.OpenAI(base_url=url + "/v1", api_key=key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Wake up"}], max_tokens=8)
    console.print(f"[green]✓[/green] a request woke it: answered in {time.monotonic() - woke:.1f} s "
                  f"(held while a replica started, not refused): {reply.choices[0].message.content!r}")


async def burst(url: str, key: str, model: str) -> int:
    """BURST_RPS requests a second for BURST_S seconds, each in flight on its own; returns how many succeeded."""
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        async def one() -> bool:
            try:
                await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=24)
            except openai.APIError:
                return False
            return True

        sent = []
        for _ in range(BURST_RPS * BURST_S):
            sent.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / BURST_RPS)
        return sum(await asyncio.gather(*sent))


def wait_until(client: ControlPlaneClient, deployment_id: str, done: Callable[[dict[str, Any]], bool],
               timeout_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(info := client.get_deployment(deployment_id)):
            return info
        time.sleep(0.25)
    return None
