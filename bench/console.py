"""Console page-load benchmark: 200 deployments, each with 7 days of history, in headless Chromium.

    .venv/bin/python bench/console.py [--deployments 200] [--runs 5]

Fills a fresh store (SQLite) with `--deployments` stopped `sim` deployments, each with every history
tier full (7 days: 720 + 2,880 + 1,152 buckets) and a scale event an hour, starts `inferstack serve`
on it, and loads in Debian's headless Chromium (a) the deployments list and (b) one deployment's page
over 7 days. A page's load time is from navigation start to the console's first complete render
(`performance.mark("console-rendered")`): HTML, scripts, the API calls and the drawing. Prints the
median and the slowest of `--runs` fresh loads of each, and the history API's own time. Target: < 300 ms.
`--screenshot PATH` saves the 7-day page (synthetic history) as a PNG.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from selenium import webdriver
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "console"))
from console_driver import headless_chromium

from harness import wait_healthy
from inferstack.history.series import SERIES, TIERS, bucket_start
from inferstack.history.table import HistoryRow
from inferstack.providers.local import free_port
from inferstack.server import open_store
from inferstack.settings import Settings
from inferstack.spec import DeploymentSpec, DeploymentStatus
from inferstack.store import EventRow

WEEK_S = 7 * 24 * 3600


def synthetic_point(at: float, phase: float, created_at: float) -> dict[str, float | int]:
    """A day-shaped load: busier by day, quieter by night, 1..4 replicas at 0.80 USD/hour each."""
    load = 0.5 + 0.5 * math.sin(2 * math.pi * at / 86_400 + phase)
    ready = 1 + round(3 * load)
    return {"arrivals_rps": 8 * load, "completions_rps": 7.8 * load, "usd_per_hour": ready * 0.8,
            "p50_latency_ms": 200 + 100 * load, "p95_latency_ms": 400 + 300 * load, "p95_ttft_ms": 80 + 40 * load,
            "ready": ready, "starting": 0, "draining": 0, "min_replicas": 1, "max_replicas": 4,
            "target_latency_ms": 1000.0, "cost_usd": (at - created_at) / 3600 * 2.0}


def fill(home: Path, count: int, now: float) -> tuple[str, str]:
    store = open_store(Settings(home=home))
    tenant, key = store.create_key("bench", now)
    first = ""
    for n in range(count):
        spec = DeploymentSpec(hf_model_id="inferstack/sim-chat", engine="sim", hardware_profile="cpu",
                              name=f"model-{n:03d}", min_replicas=1, max_replicas=4,
                              target_latency_p95_ms=1000)
        row = store.create_deployment(tenant, spec, now - WEEK_S)
        store.update_deployment(row.id, status=DeploymentStatus.stopped, status_reason="benchmark")
        first = first or row.id
        rows = []
        for tier in TIERS:
            start = bucket_start(now - tier.keep_s, tier.resolution_s)
            for i in range(tier.keep_s // tier.resolution_s):
                at = start + i * tier.resolution_s
                point = synthetic_point(at, phase=n / count * math.pi, created_at=now - WEEK_S)
                rows.append({"deployment_id": row.id, "resolution_s": tier.resolution_s, "at": at, "samples": 1,
                             **{name: point[name] for name in SERIES}})
        events = [{"deployment_id": row.id, "at": now - WEEK_S + h * 3600, "kind": "scaled",
                   "message": f"{1 + h % 3} -> {2 + h % 3} replicas: 7.9 rps over a target of 2/replica",
                   "data": {"before": 1 + h % 3, "after": 2 + h % 3, "rps": 7.9}} for h in range(24 * 7)]
        with store.session() as s:
            s.execute(insert(HistoryRow), rows)
            s.execute(insert(EventRow), events)
    store.engine.dispose()
    return key, first


def page_load_ms(driver: webdriver.Chrome, url: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        driver.get("about:blank")
        driver.get(url)
        deadline = time.monotonic() + 30
        while True:
            mark = driver.execute_script(
                "const m = performance.getEntriesByName('console-rendered'); return m.length ? m[0].startTime : null")
            if mark is not None:
                times.append(float(mark))
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} never rendered")
            time.sleep(0.02)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save the 7-day deployment page here (PNG)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        started = time.monotonic()
        key, deployment_id = fill(home, args.deployments, time.time())
        print(f"store filled: {args.deployments} deployments x 7 days of history in {time.monotonic() - started:.1f} s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "INFERSTACK_HOME": str(home)}
        server = subprocess.Popen([str(Path(sys.executable).parent / "inferstack"), "serve", "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = None
        try:
            wait_healthy(url + "/health", timeout=60)
            auth = {"Authorization": f"Bearer {key}"}
            api_ms = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                answer = httpx.get(f"{url}/v1/deployments/{deployment_id}/history", params={"window": "7d"},
                                   headers=auth, timeout=30)
                api_ms.append((time.perf_counter() - t0) * 1000)
            points = len(answer.json()["series"]["at"])
            driver = headless_chromium()
            driver.get(url + "/console/")
            driver.execute_script("sessionStorage.setItem('inferstack.apiKey', arguments[0])", key)
            results = {
                f"deployments list ({args.deployments})": page_load_ms(driver, url + "/console/#/", args.runs),
                f"deployment page, 7 days ({points} points)": page_load_ms(
                    driver, f"{url}/console/#/deployments/{deployment_id}?window=7d", args.runs),
            }
            if args.screenshot:
                driver.set_window_size(1400, 1150)
                driver.save_screenshot(str(args.screenshot))
            print(f"history API, 7 days: median {statistics.median(api_ms):.0f} ms, max {max(api_ms):.0f} ms")
            for name, times in results.items():
                print(f"{name}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms "
                      f"over {len(times)} loads (target < 300 ms)")
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
