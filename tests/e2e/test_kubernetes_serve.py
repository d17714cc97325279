"""`inferstack serve` with INFERSTACK_PROVIDER=kubernetes, end to end on the emulated cluster: the
control plane (a subprocess, through a kubeconfig) creates the replica Deployment, the test kubelet runs
its pods as `sim` processes, and the whole loop runs with the official `openai` client: ready ->
traffic -> scale up -> drain and scale down with the chosen pods removed -> pause to zero -> wake ->
delete, with no failed request. Also: a replica is routed to only while its pod is Ready, a failed pod
is replaced, and a rolling stop of the leader hands its pods over to the next one under their replica ids."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from test_autoscaling import SPEC, openai_client, replica_count, steady_load

from kube_cluster import Cluster, running_cluster
from support import ControlPlane, leader_and_follower, sim_deployment, wait_adopted, wait_for, wait_running

NAMESPACE = "inferstack"


def kubernetes_env(cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
    return {"INFERSTACK_PROVIDER": "kubernetes", "INFERSTACK_K8S_NAMESPACE": NAMESPACE, "KUBECONFIG": str(kubeconfig)}


@pytest.fixture
def on_kubernetes(tmp_path: Path) -> Iterator[tuple[ControlPlane, Cluster]]:
    with running_cluster(tmp_path / "pods") as cluster:
        plane = ControlPlane(home=tmp_path / "home", env_extra=kubernetes_env(cluster, tmp_path))
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

    # Delete: the replicas go, and with them every pod, the replica Deployment and the Secret with the key.
    assert rest.delete(f"/v1/deployments/{dep['id']}").status_code in (200, 204)
    wait_for(lambda: cluster.kubelet.pods(NAMESPACE) == [], timeout=30, what="no pods after delete")
    wait_for(lambda: objects(cluster, "deployments") == objects(cluster, "secrets") == set(), timeout=10,
             what="no Deployment or Secret after delete")


def objects(cluster: Cluster, plural: str) -> set[str]:
    return {name for (r, _, name), o in cluster.emulator.objects.items() if r.plural == plural and not o.deleted}


def served(pod: dict) -> float:
    """Requests the pod's engine completed (its own counter, read from the pod)."""
    page = httpx.get(f"http://{pod['status']['podIP']}:8000/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(page) if family.name == "vllm:request_success"
               for sample in family.samples if sample.name.endswith("_total"))


def write_pod_status(cluster: Cluster, pod: str, status: dict) -> None:
    """What the kubelet does (a readiness probe failed, a container crash-loops): PATCH the pod's status."""
    httpx.patch(f"{cluster.url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}/status", json={"status": status},
                headers={"Content-Type": "application/merge-patch+json"}, timeout=10).raise_for_status()


def test_a_replica_gets_requests_only_while_its_pod_is_ready_and_a_crash_looping_pod_is_replaced(
        on_kubernetes: tuple[ControlPlane, Cluster]) -> None:
    plane, cluster = on_kubernetes
    key = plane.create_key("steady")
    rest = plane.client(key)
    dep_id = sim_deployment(plane, key, "steady", min_replicas=2, max_replicas=2)
    wait_for(lambda: rest.get(f"/v1/deployments/{dep_id}").json()["ready_replicas"] == 2, timeout=60,
             what="2 ready replicas")
    pods = {p["metadata"]["annotations"]["inferstack.io/replica-id"]: p for p in cluster.kubelet.pods(NAMESPACE)}
    (sick_id, sick), (well_id, well) = sorted(pods.items())
    cluster.kubelet.hands_off.add(sick["metadata"]["name"])  # its status is the test's to write from now on
    not_ready = {"type": "Ready", "status": "False", "reason": "ReadinessProbeFailed"}
    write_pod_status(cluster, sick["metadata"]["name"], {"conditions": [
        {"type": "PodScheduled", "status": "True"}, not_ready, {**not_ready, "type": "ContainersReady"}]})

    def status_of(replica_id: str) -> str | None:
        rows = rest.get(f"/v1/deployments/{dep_id}/replicas", params={"all": "true"}).json()["data"]
        return next((r["status"] for r in rows if r["id"] == replica_id), None)

    wait_for(lambda: status_of(sick_id) == "starting", timeout=10, what="the replica out of the rotation")
    events = rest.get(f"/v1/deployments/{dep_id}/events").json()["data"]
    assert any(e["kind"] == "replica_not_ready" and e["data"]["replica_id"] == sick_id for e in events)
    sick_before, well_before = served(sick), served(well)
    for i in range(8):
        answer = rest.post("/v1/chat/completions", json={
            "model": "steady", "messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 2})
        assert answer.status_code == 200, answer.text
    assert (served(sick), served(well)) == (sick_before, well_before + 8)  # all to the Ready pod

    # The container now crash-loops: the replica failed, with the kubelet's reason, and is replaced.
    write_pod_status(cluster, sick["metadata"]["name"], {"containerStatuses": [{
        "name": "engine", "image": "x", "imageID": "x", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}}]})
    wait_for(lambda: status_of(sick_id) == "failed", timeout=10, what="the crash-looping replica failed")
    wait_for(lambda: rest.get(f"/v1/deployments/{dep_id}").json()["ready_replicas"] == 2, timeout=60,
             what="a replacement")
    events = rest.get(f"/v1/deployments/{dep_id}/events").json()["data"]
    assert any(e["kind"] == "replica_failed" and "CrashLoopBackOff" in e["message"] for e in events)
    wait_for(lambda: sick["metadata"]["name"] not in {p["metadata"]["name"] for p in cluster.kubelet.pods(NAMESPACE)},
             timeout=10, what="the crash-looping pod removed")
    assert well_id in pods_by_replica(cluster) and len(pods_by_replica(cluster)) == 2


class OnePodTwoInstances(NamedTuple):
    cluster: Cluster
    leader: ControlPlane
    follower: ControlPlane
    key: str
    deployment_id: str
    replica_id: str
    pod: str


@pytest.fixture
def one_pod_two_instances(tmp_path: Path) -> Iterator[OnePodTwoInstances]:
    """A deployment of one replica (one pod), created on the leader of two instances on one database."""
    with running_cluster(tmp_path / "pods") as cluster, \
            leader_and_follower(tmp_path, kubernetes_env(cluster, tmp_path)) as (leader, follower):
        key = leader.create_key("team")
        dep_id = sim_deployment(leader, key, "steady", min_replicas=1, max_replicas=1)
        ((replica_id, pod),) = pods_by_replica(cluster).items()
        yield OnePodTwoInstances(cluster, leader, follower, key, dep_id, replica_id, pod)


@pytest.mark.postgres
def test_a_rolling_stop_of_the_leader_hands_its_pods_over(one_pod_two_instances: OnePodTwoInstances) -> None:
    cluster, leader, follower, key, dep_id, replica_id, pod = one_pod_two_instances
    rows = leader.client(key).get(f"/v1/deployments/{dep_id}/replicas").json()["data"]
    assert [(r["id"], r["status"]) for r in rows] == [(replica_id, "ready")]
    time.sleep(1.5)  # the follower has said it is alive (every second)

    leader.stop(signal.SIGTERM)  # as Kubernetes does in a rolling update of the control plane
    # It ended on its own (uvicorn re-raises the SIGTERM once shut down), not killed 30 s later.
    assert leader.process is not None and leader.process.returncode == -signal.SIGTERM
    rest = follower.client(key)
    wait_adopted(follower, key, dep_id)
    assert f"keeping replica {replica_id}: pod {pod}" in follower.log_text()
    time.sleep(1.0)  # ten ticks of the new leader: a replacement would have been asked for by now
    assert pods_by_replica(cluster) == {replica_id: pod}  # the same pod, never stopped, none added
    assert [p["metadata"]["name"] for p in cluster.kubelet.pods(NAMESPACE)] == [pod]
    rows = rest.get(f"/v1/deployments/{dep_id}/replicas", params={"all": "true"}).json()["data"]
    assert [(r["id"], r["status"]) for r in rows] == [(replica_id, "ready")], rows
    answer = rest.post("/v1/chat/completions", json={
        "model": "steady", "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 2})
    assert answer.status_code == 200, answer.text


def free_rows_held_by(frozen: ControlPlane) -> None:
    """End the database sessions of a frozen instance, all but the one holding its lead (the advisory lock):
    one frozen inside a transaction would hold its row locks, and every other instance's writes would wait."""
    assert frozen.process is not None
    ports = [c.laddr.port for c in psutil.Process(frozen.process.pid).net_connections(kind="tcp")
             if c.raddr and c.raddr.port == 5432]
    with create_engine(frozen.env_extra["INFERSTACK_DATABASE_URL"]).connect() as db:
        db.execute(text("select pg_terminate_backend(pid) from pg_stat_activity where client_port = any(:ports) "
                        "and pid not in (select pid from pg_locks where locktype = 'advisory')"), {"ports": ports})


@pytest.mark.postgres
def test_a_deployment_deleted_while_no_instance_leads_is_removed_by_the_next_leader(
        one_pod_two_instances: OnePodTwoInstances) -> None:
    cluster, leader, follower, key, dep_id, replica_id, pod = one_pod_two_instances
    assert objects(cluster, "deployments") and objects(cluster, "secrets")
    assert leader.process is not None
    try:
        leader.process.send_signal(signal.SIGSTOP)  # it still holds the lead, and can do nothing with it
        free_rows_held_by(leader)
        deleted = follower.client(key).delete(f"/v1/deployments/{dep_id}")
        assert deleted.status_code == 200, deleted.text
        time.sleep(1.0)
        assert pods_by_replica(cluster) == {replica_id: pod}  # no instance could act on the delete
    finally:
        leader.process.kill()  # the lead passes to the follower, which never saw the deployment run
        leader.process.wait()
    wait_for(lambda: pods_by_replica(cluster) == {} and objects(cluster, "deployments") == set()
             and objects(cluster, "secrets") == set(), timeout=30,
             what="the new leader to remove the deleted deployment's pod, Deployment and Secret")
    assert f"keeping replica {replica_id}: pod {pod}" in follower.log_text()
    with create_engine(follower.env_extra["INFERSTACK_DATABASE_URL"]).connect() as db:
        replicas = db.execute(text("select id, status from replicas")).all()
        removed = db.execute(text("select removed_at from deployments where id = :id"), {"id": dep_id}).scalar()
    assert [tuple(r) for r in replicas] == [(replica_id, "stopped")] and removed is not None
