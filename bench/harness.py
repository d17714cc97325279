"""What both benchmarks stand on: sim replicas that answer fast, and a fleet of one deployment over them."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from inferstack.fleet import Fleet, LiveDeployment, LiveReplica
from inferstack.providers.base import ReplicaHandle
from inferstack.providers.local import free_port
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus

REPLICA_KEY = "bench-replica-key"


def start_sim_replicas(count: int, ttft_ms: float, max_concurrency: int) -> tuple[list[subprocess.Popen[bytes]],
                                                                                  list[str]]:
    """`count` sim replicas served as "bench", instant tokens after `ttft_ms`; waits until each is healthy."""
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "inferstack.engines.sim", "--host", "127.0.0.1", "--port", str(port),
             "--served-model-name", "bench", "--api-key", REPLICA_KEY, "--ttft-ms", str(ttft_ms),
             "--tokens-per-s", "0", "--max-concurrency", str(max_concurrency)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_healthy(url + "/health")
    return processes, urls


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def bench_fleet(tenant_id: str, urls: list[str]) -> Fleet:
    """A fleet holding one running deployment, "bench", with a ready replica per URL."""
    spec = DeploymentSpec(hf_model_id="inferstack/sim", engine="sim", hardware_profile="cpu", name="bench",
                          min_replicas=len(urls), max_replicas=len(urls))
    now = time.time()
    deployment = LiveDeployment(id="dep-bench", tenant_id=tenant_id, name="bench", spec=spec,
                                status=DeploymentStatus.running, status_reason="", created_at=now, awake_since=now)
    for n, url in enumerate(urls):
        deployment.replicas[f"rep-{n}"] = LiveReplica(handle=ReplicaHandle(f"rep-{n}", url, None, ""),
                                                      api_key=REPLICA_KEY, status=ReplicaStatus.ready, started_at=now)
    fleet = Fleet()
    fleet.add(deployment)
    return fleet


class AlwaysAwake:
    """The controller's wake-up, for a fleet that never sleeps."""

    def wake(self, deployment: LiveDeployment) -> None:
        raise AssertionError("the bench deployment never sleeps")
