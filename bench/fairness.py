"""Fairness benchmark: one key floods the control plane with streams; how long do the others wait?

    .venv/bin/python bench/fairness.py [--flood 500] [--concurrency 8]

Runs `inferstack serve` (sim replicas, SQLite). Tenant A's deployment `busy` is a sim engine that runs 16
sequences at once (like an engine's batch), tenant B has its own deployment `quiet`. A's flood key opens
`--flood` streams at once (10 tokens at 40 tokens/s: 0.25 s each once running); meanwhile two neighbours
send a request every 50 ms: tenant B on `quiet`, and another key of tenant A's on `busy`. First with an
unlimited flood key, then with one limited to `--concurrency` requests in flight. Prints the flood's
served/refused counts and each neighbour's p50/p95. One run each on a shared machine: compare the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import wait_healthy
from inferstack.providers.local import free_port

SIM = {"hf_model_id": "inferstack/sim-chat", "engine": "sim", "hardware_profile": "cpu"}
FLOOD_ARGS = ["--ttft-ms", "1", "--tokens-per-s", "40", "--max-concurrency", "16"]
FLOOD_TOKENS = 10
NEIGHBOUR_REQUESTS = 40
NEIGHBOUR_INTERVAL_S = 0.05


async def flood_and_measure(url: str, flood_key: str, flood_model: str, neighbours: list[tuple[str, str]],
                            flood: int) -> tuple[list[int], list[list[float]]]:
    """Open `flood` streams at once with `flood_key`; meanwhile each neighbour (key, model) sends a short
    stream every 50 ms. Returns the flood's statuses and each neighbour's latencies (s)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def stream(key: str, model: str, max_tokens: int) -> tuple[int, float]:
            started = time.perf_counter()
            body: dict[str, Any] = {"model": model, "stream": True, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": "hello"}]}
            async with session.post(url + "/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {key}"}) as response:
                await response.read()
                return response.status, time.perf_counter() - started

        flooding = [asyncio.create_task(stream(flood_key, flood_model, FLOOD_TOKENS)) for _ in range(flood)]
        measured: list[list[asyncio.Task[tuple[int, float]]]] = [[] for _ in neighbours]
        for _ in range(NEIGHBOUR_REQUESTS):
            for tasks, (key, model) in zip(measured, neighbours, strict=True):
                tasks.append(asyncio.create_task(stream(key, model, 4)))
            await asyncio.sleep(NEIGHBOUR_INTERVAL_S)
        statuses = [status for status, _ in await asyncio.gather(*flooding)]
        latencies = []
        for tasks in measured:
            answers = await asyncio.gather(*tasks)
            if any(status != 200 for status, _ in answers):
                raise AssertionError(f"a neighbour's request failed: {[status for status, _ in answers]}")
            latencies.append([seconds for _, seconds in answers])
    return statuses, latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def figures(latencies: list[float]) -> str:
    return f"{statistics.median(latencies) * 1000:.0f}/{p95(latencies) * 1000:.0f} ms"


def wait_running(rest: httpx.Client, deployment_id: str) -> None:
    deadline = time.monotonic() + 60
    while rest.get(f"/v1/deployments/{deployment_id}").json()["status"] != "running":
        if time.monotonic() > deadline:
            raise SystemExit(f"{deployment_id} did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    inferstack = str(Path(sys.executable).parent / "inferstack")
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        env = {**os.environ, "INFERSTACK_HOME": home, "INFERSTACK_CONTROLLER_TICK_S": "0.1"}
        server = subprocess.Popen([inferstack, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url + "/health")

            def key(tenant: str) -> str:
                made = subprocess.run([inferstack, "keys", "create", "--tenant", tenant], env=env, check=True,
                                      capture_output=True, text=True)
                return made.stdout.strip().splitlines()[-1]

            flooder, colleague, neighbour = key("flooder"), key("flooder"), key("neighbour")
            rest = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {flooder}"}, timeout=30)
            quiet = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {neighbour}"}, timeout=30)
            wait_running(rest, rest.post("/v1/deployments", json={**SIM, "name": "busy",
                                                                   "engine_args": FLOOD_ARGS}).json()["id"])
            wait_running(quiet, quiet.post("/v1/deployments", json={**SIM, "name": "quiet", "engine_args": [
                "--ttft-ms", "1", "--tokens-per-s", "0"]}).json()["id"])
            limited = rest.post("/v1/keys", json={"limits": {"max_concurrent_requests": args.concurrency}})
            print(f"{args.flood} streams from one key; meanwhile a request every {NEIGHBOUR_INTERVAL_S * 1000:.0f} ms "
                  "from another tenant (own deployment) and from another key on the flooded deployment")
            for label, flood_key in (("no limit", flooder), (f"{args.concurrency} in flight", limited.json()["key"])):
                statuses, (tenant_b, same_deployment) = asyncio.run(flood_and_measure(
                    url, flood_key, "busy", [(neighbour, "quiet"), (colleague, "busy")], args.flood))
                print(f"{label:>14}: flood {statuses.count(200)} served, {statuses.count(429)} refused; "
                      f"other tenant p50/p95 {figures(tenant_b)}; other key on the same deployment "
                      f"p50/p95 {figures(same_deployment)}")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
