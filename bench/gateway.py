"""Gateway overhead benchmark: added latency (p50/p99) and the most requests/sec one gateway worker takes.

    .venv/bin/python bench/gateway.py [--seconds 5] [--concurrency 64]
    .venv/bin/python bench/gateway.py --workers 2   # 1 vs 2 worker processes, beside a bare aiohttp proxy (wrk)

Runs, on this machine: one `sim` replica that answers at once (ttft 0, instant tokens), one gateway
worker process doing its real per-request work (bearer-key auth, model -> deployment resolution,
two-choice replica pick, metrics window, Prometheus counters, proxying with the pooled client), and a
load generator. Every figure comes from the same run, so compare them as ratios: the machine is shared.
Added latency = gateway p50/p99 minus direct-to-replica p50/p99 at one request at a time.
With `--workers N` the upstream is a canned answer on N processes of its own instead of the sim replica
(so that neither proxy is capped by its upstream) and wrk is the load generator.
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

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import REPLICA_KEY, start_sim_replicas, wait_healthy
from inferstack.providers.local import free_port
from workers import (
    serve_bare_proxy,
    serve_fast_upstream,
    shared_socket,
    start_processes,
    stop_processes,
    wrk_path,
    wrk_rps,
)

BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
STREAM_BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                            "stream": True})


def make_bench_key(home: str) -> str:
    """The bench tenant and its key, made once before any gateway worker starts (they share the store)."""
    from inferstack.server import open_database

    tenant, key = open_database(f"sqlite:///{home}/bench.db").create_key("bench", time.time())
    Path(home, "tenant").write_text(tenant)
    Path(home, "key").write_text(key)
    return key


def serve_gateway(replica_url: str, port: int, home: str) -> None:
    """A gateway worker: the production Gateway class over a real store, keys and fleet. Several may run
    on one port (SO_REUSEPORT), as `inferstack serve --workers N` does."""
    import uvicorn

    from harness import AlwaysAwake, bench_fleet
    from inferstack.auth import KeyRing
    from inferstack.clock import SystemClock
    from inferstack.gateway.entry import Gateway
    from inferstack.server import open_database

    store = open_database(f"sqlite:///{home}/bench.db")
    tenant = Path(home, "tenant").read_text()
    gateway = Gateway(bench_fleet(tenant, [replica_url]), KeyRing(store, SystemClock()), AlwaysAwake(), SystemClock())

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await gateway.start()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await gateway.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await gateway(scope, receive, send)

    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False,
                            proxy_headers=False, server_header=False, date_header=False)
    uvicorn.Server(config).run(sockets=[shared_socket(port)])


def compare_workers(workers: int, seconds: float, connections: int, samples: int) -> None:
    """Requests/sec (wrk) of the gateway and of a bare aiohttp proxy with 1 and `workers` processes, the
    same upstream behind both, and the gateway's added p50. The upstream is not a sim replica but a canned
    answer on `workers` processes of its own (`workers.serve_fast_upstream`): a sim replica caps both
    proxies at its own rate, and the comparison would show nothing."""
    wrk_path()
    home = tempfile.mkdtemp(prefix="inferstack-bench-")
    key = make_bench_key(home)
    upstream_port = free_port()
    replicas = start_processes([__file__, "--serve-upstream", str(upstream_port)], workers)
    replica_url = f"http://127.0.0.1:{upstream_port}"
    rps: dict[tuple[str, int], float] = {}
    added_p50: dict[int, float] = {}
    try:
        wait_healthy(replica_url + "/")
        upstream_rps = wrk_rps(replica_url + "/v1/chat/completions", "unused", connections, seconds)
        direct = asyncio.run(one_at_a_time(replica_url + "/v1/chat/completions", REPLICA_KEY, BODY, samples))
        for kind in ("gateway", "bare proxy"):
            for count in (1, workers):
                port = free_port()
                argv = ([__file__, "--serve-gateway", replica_url, str(port), home] if kind == "gateway"
                        else [__file__, "--serve-bare-proxy", replica_url, str(port)])
                processes = start_processes(argv, count)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                try:
                    wait_healthy(f"http://127.0.0.1:{port}/")
                    time.sleep(1.0)  # every worker up, not just the first to answer
                    request_key = key if kind == "gateway" else "unused"
                    wrk_rps(url, request_key, connections, 1)  # warm-up
                    rps[(kind, count)] = wrk_rps(url, request_key, connections, seconds)
                    if kind == "gateway":
                        via = asyncio.run(one_at_a_time(url, key, BODY, samples))
                        added_p50[count] = statistics.median(via) - statistics.median(direct)
                finally:
                    stop_processes(processes)
    finally:
        stop_processes(replicas)

    gain = {kind: rps[(kind, workers)] / rps[(kind, 1)] for kind in ("gateway", "bare proxy")}
    print(f"worker scaling: wrk -t1 -c{connections} for {seconds:g} s per row, {os.cpu_count()} cores shared by wrk, "
          f"the upstream and the servers; the upstream alone ({workers} processes, a canned answer): "
          f"{upstream_rps:,.0f} req/s")
    print(f"{'server':<11} {'1 worker':>12} {f'{workers} workers':>12} {'gain':>6}   added p50 (ms, gateway)")
    for kind in ("gateway", "bare proxy"):
        extra = (f"   {added_p50[1]:.3f} / {added_p50[workers]:.3f}" if kind == "gateway" else "")
        print(f"{kind:<11} {rps[(kind, 1)]:>12,.0f} {rps[(kind, workers)]:>12,.0f} {gain[kind]:>5.2f}x{extra}")
    ratio = gain["gateway"] / gain["bare proxy"]
    verdict = "met" if ratio >= 0.8 and added_p50[workers] <= 0.5 else "NOT met"
    print(f"gateway gain / bare proxy gain = {ratio:.2f} (goal >= 0.8, added p50 <= 0.5 ms: {verdict})")


async def one_at_a_time(url: str, key: str, body: bytes, count: int) -> list[float]:
    """Latency of `count` sequential requests (ms): the added latency without queueing effects."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    samples = []
    async with aiohttp.ClientSession() as session:
        for i in range(count + 50):
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200, await response.text()
            if i >= 50:  # warm-up: connection set-up and first-call costs are not the steady state
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def saturate(url: str, key: str, concurrency: int, seconds: float) -> tuple[float, int]:
    """Requests/sec with `concurrency` connections each sending back to back for `seconds`."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                done += 1
                errors += response.status != 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return done / (time.perf_counter() - started), errors


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1,
                        help="Compare 1 and this many worker processes, beside a bare aiohttp proxy (needs wrk).")
    parser.add_argument("--serve-gateway", nargs=3, metavar=("REPLICA_URL", "PORT", "HOME"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-proxy", nargs=2, metavar=("REPLICA_URL", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-upstream", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(args.serve_gateway[0], int(args.serve_gateway[1]), args.serve_gateway[2])
        return
    if args.serve_upstream:
        serve_fast_upstream(int(args.serve_upstream))
        return
    if args.serve_bare_proxy:
        serve_bare_proxy(args.serve_bare_proxy[0], REPLICA_KEY, int(args.serve_bare_proxy[1]))
        return
    if args.workers > 1:
        compare_workers(args.workers, args.seconds, args.concurrency, min(args.samples, 1000))
        return

    home = tempfile.mkdtemp(prefix="inferstack-bench-")
    make_bench_key(home)
    replicas, (replica_url,) = start_sim_replicas(1, ttft_ms=0, max_concurrency=1024)
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    processes = [*replicas, subprocess.Popen([sys.executable, __file__, "--serve-gateway", replica_url,
                                              str(gateway_port), home])]
    try:
        wait_healthy(gateway_url + "/")
        gateway_key = Path(home, "key").read_text()
        rows = []
        for label, body in (("plain", BODY), ("stream", STREAM_BODY)):
            direct = asyncio.run(one_at_a_time(replica_url + "/v1/chat/completions", REPLICA_KEY, body, args.samples))
            via = asyncio.run(one_at_a_time(gateway_url + "/v1/chat/completions", gateway_key, body, args.samples))
            rows.append((label, direct, via))
        direct_rps, _ = asyncio.run(saturate(replica_url + "/v1/chat/completions", REPLICA_KEY,
                                             args.concurrency, args.seconds))
        gateway_rps, gateway_errors = asyncio.run(saturate(gateway_url + "/v1/chat/completions", gateway_key,
                                                           args.concurrency, args.seconds))
    finally:
        for process in processes:
            process.terminate()
            process.wait()

    print(f"gateway benchmark: 1 gateway worker, sim replica answering at once, {os.cpu_count()} cores, "
          f"{args.samples} sequential requests per row, {args.concurrency} connections for {args.seconds:g} s")
    print(f"{'request':<8} {'direct p50':>11} {'gateway p50':>12} {'added p50':>10} {'direct p99':>11} "
          f"{'gateway p99':>12} {'added p99':>10}   (ms)")
    for label, direct, via in rows:
        d50, v50, d99, v99 = (statistics.median(direct), statistics.median(via), percentile(direct, 0.99),
                              percentile(via, 0.99))
        print(f"{label:<8} {d50:>11.3f} {v50:>12.3f} {v50 - d50:>10.3f} {d99:>11.3f} {v99:>12.3f} {v99 - d99:>10.3f}")
    print(f"max throughput: gateway {gateway_rps:,.0f} req/s ({gateway_errors} errors), "
          f"direct to replica {direct_rps:,.0f} req/s (load generator, replica and gateway share the cores)")
    print("goal: added p50 <= 0.5 ms, >= 4,000 req/s per gateway worker")


if __name__ == "__main__":
    main()
