"""`inferstack serve` with INFERSTACK_PROVIDER=kubernetes, end to end on the emulated cluster: the
control plane (a subprocess, through a kubeconfig) creates the replica Deployment, the test kubelet runs
its pods as `sim` processes, and the whole loop runs with the official `openai` client: ready ->
traffic -> scale up -> drain and scale down with the chosen pods removed -> pause to zero -> wake ->
delete, with no failed request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_autoscaling import SPEC, openai_client, replica_count, steady_load

from kube_cluster import Cluster, running_cluster
from support import ControlPlane, wait_for, wait_running

NAMESPACE = "inferstack"


@pytest.fixture
def on_kubernetes(tmp_path: Path) -> Iterator[tuple[ControlPlane, Cluster]]:
    with running_cluster(tmp_path / "pods") as cluster:
        kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
        plane = ControlPlane(home=tmp_path / "home", env_extra={
            "INFERSTACK_PROVIDER": "kubernetes", "INFERSTACK_K8S_NAMESPACE": NAMESPACE, "KUBECONFIG": str(kubeconfig)})
        plane.start()
        try:
            yield plane, cluster
        finally:
            plane.stop()


def pods_by_replica(cluster: Cluster) -> dict[str, str]:
    """Replica id -> pod name, for the pods that still run."""
    return {p["metadata"]["annotations"]["inferstack.io/replica-id"]: p["metadata"]["name"]
            for p in cluster.kubelet.pods(NAMESPACE) if "inferstack.io/replica-id" in p["metadata"]["annotations"]}


def test_the_whole_loop_on_kubernetes_loses_no_request(on_kubernetes: tuple[ControlPlane, Cluster]) -> None:
    plane, cluster = on_kubernetes
    key = plane.create_key("elastic")
    rest = plane.client(key)
    dep = rest.post("/v1/deployments", json=SPEC).json()
    wait_running(rest, dep["id"])
    (pod,) = cluster.kubelet.pods(NAMESPACE)
    assert pod["metadata"]["labels"]["inferstack.io/deployment"] == "elastic"
    replicas = rest.get(f"/v1/deployments/{dep['id']}").json()["replicas"]
    assert [(r["url"], r["provider"]) for r in replicas if r["status"] == "ready"] == [
        (f"http://{pod['status']['podIP']}:8000", "kubernetes")]  # the pod IP and its container port
    status = json.loads(plane.cli(key, "status", "elastic", "-o", "json").stdout)
    assert [(r["provider"], r["burst"]) for r in status["replicas"]] == [("kubernetes", False)]

    # Load rises: 12 rps against 2 per replica, 3 one-slot replicas' worth -> 3 replicas, 3 pods.
    assert asyncio.run(steady_load(openai_client(plane, key), rps=12, seconds=5)) == []
    wait_for(lambda: rest.get(f"/v1/deployments/{dep['id']}").json()["ready_replicas"] == 3, timeout=60,
             what="3 ready replicas")
    before = pods_by_replica(cluster)
    assert len(before) == 3

    # The load falls while streams run: the controller drains the replicas it chose, and exactly their pods go.
    assert asyncio.run(steady_load(openai_client(plane, key), rps=1.5, seconds=6, stream=True)) == []
    wait_for(lambda: replica_count(rest, dep["id"]) == 1, timeout=60, what="shrink to 1 replica")
    wait_for(lambda: len(cluster.kubelet.pods(NAMESPACE)) == 1, timeout=30, what="one pod left")
    events = rest.get(f"/v1/deployments/{dep['id']}/events", params={"limit": 200}).json()["data"]
    stopped = {e["data"]["replica_id"] for e in events if e["kind"] == "replica_stopped"}
    assert len(stopped) == 2 and all(e["data"]["cut_off_requests"] == 0 for e in events
                                     if e["kind"] == "replica_stopped")
    (kept,) = set(before) - stopped
    assert pods_by_replica(cluster) == {kept: before[kept]}

    # Idle -> paused, no pod left; a burst wakes it and every request is served.
    wait_for(lambda: rest.get(f"/v1/deployments/{dep['id']}").json()["status"] == "paused", timeout=30,
             what="paused")
    wait_for(lambda: cluster.kubelet.pods(NAMESPACE) == [], timeout=30, what="no pods while paused")

    async def burst() -> list[str]:
        client = openai_client(plane, key)
        results = await asyncio.gather(*(client.chat.completions.create(
            model="elastic", messages=[{"role": "user", "content": f"wake {i}"}], max_tokens=4) for i in range(10)),
            return_exceptions=True)
        return [str(r) for r in results if isinstance(r, BaseException)]

    assert asyncio.run(burst()) == []
    assert len(cluster.kubelet.pods(NAMESPACE)) >= 1

    # Delete: the replicas go, and with them every pod.
    assert rest.delete(f"/v1/deployments/{dep['id']}").status_code in (200, 204)
    wait_for(lambda: cluster.kubelet.pods(NAMESPACE) == [], timeout=30, what="no pods after delete")
