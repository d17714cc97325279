"""The `kubernetes` provider against a Kubernetes API over real HTTP (kmock's emulator) with the test
kubelet running real `sim` replica processes (tests/providers/kube_cluster.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from inferstack.clock import ManualClock, SystemClock
from inferstack.providers.base import PoolFull, ProviderError, ReplicaHandle
from inferstack.providers.kubernetes import KubernetesProvider, KubernetesProviderConfig
from inferstack.providers.kubernetes_cluster import KubernetesCluster
from inferstack.providers.kubernetes_pods import REPLICA_ANNOTATION
from inferstack.spec import DeploymentSpec
from kube_cluster import Cluster, free_port_everywhere, running_cluster

NAMESPACE = "inferstack"
SPEC = DeploymentSpec(hf_model_id="inferstack/sim-chat", engine="sim", hardware_profile="cpu", name="chat",
                      hf_token="hf_secret_token_123")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "pods") as running:
        yield running


def provider(cluster: Cluster, tmp_path: Path, clock: object = None, port: int | None = None,
             **kwargs: float) -> KubernetesProvider:
    config = KubernetesProviderConfig(namespace=NAMESPACE, replica_port=port or free_port_everywhere())
    client = cluster.client(tmp_path, NAMESPACE)
    return KubernetesProvider(config, KubernetesCluster(client, NAMESPACE), clock or SystemClock(),  # type: ignore[arg-type]
                              tmp_path / "logs", poll_s=0.05, **kwargs)


async def ready(handle: ReplicaHandle, timeout: float = 30) -> None:
    """The replica answers as the controller's probe asks: /v1/models with the key from the handle."""
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(int(timeout / 0.1)):
            try:
                models = await http.get(handle.url + "/v1/models",
                                        headers={"Authorization": f"Bearer {handle.api_key}"})
                if models.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.url} never answered")


def pods_of(cluster: Cluster) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in cluster.kubelet.pods(NAMESPACE)}


async def test_a_replica_is_a_pod_that_answers_with_the_secrets_key_never_in_the_pod_spec(
        cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        handle = await k8s.start("dep-1", "chat", "rep-1", SPEC, "key-from-the-controller")
        await ready(handle)
        (pod,) = pods_of(cluster).values()
        assert handle.url == f"http://{pod['status']['podIP']}:{pod['spec']['containers'][0]['ports'][0]['containerPort']}"
        assert pod["metadata"]["annotations"][REPLICA_ANNOTATION] == "rep-1"
        async with httpx.AsyncClient() as http:  # the key guards the replica
            assert (await http.get(handle.url + "/v1/models")).status_code == 401
        spec_text = str(pod["spec"])
        assert "hf_secret_token_123" not in spec_text and handle.api_key not in spec_text
        # A second start of the same deployment reuses the Deployment and its key.
        second = await k8s.start("dep-1", "chat", "rep-2", SPEC.with_changes({"hf_token": "hf_rotated"}),
                                 "another-key")
        assert second.api_key == handle.api_key and second.url != handle.url
        await ready(second)
        await ready(handle)  # the first pod still checks the same key
        secret = next(o.raw for (r, _, name), o in cluster.emulator.objects.items() if name == "replicas-chat"
                      and r.plural == "secrets")
        assert secret["stringData"]["token"] == "hf_rotated"  # new pods get the new token
    finally:
        await k8s.close()
    await gone(cluster)  # a closed provider leaves nothing running: its Deployments are at 0


async def gone(cluster: Cluster, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if not pods_of(cluster):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"pods left: {sorted(pods_of(cluster))}")


async def test_stop_removes_exactly_the_chosen_pod(cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        handles = [await k8s.start("dep-1", "chat", f"rep-{i}", SPEC, "k") for i in range(3)]
        for handle in handles:
            await ready(handle)
        # And Ready in the cluster: the ReplicaSet removes a not-Ready pod before it looks at deletion cost.
        for _ in range(200):
            if all(any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in p.get("status", {}).get("conditions", [])) for p in pods_of(cluster).values()):
                break
            await asyncio.sleep(0.05)
        by_replica = {p["metadata"]["annotations"][REPLICA_ANNOTATION]: name for name, p in pods_of(cluster).items()}
        await k8s.stop(handles[1])  # the middle one: neither the newest nor the oldest
        for _ in range(100):
            if len(pods_of(cluster)) == 2:
                break
            await asyncio.sleep(0.05)
        assert set(pods_of(cluster)) == {by_replica["rep-0"], by_replica["rep-2"]}
        assert k8s.exit_code(handles[0]) is None
    finally:
        await k8s.close()


async def test_an_oom_killed_pod_is_an_exited_replica_with_its_reason_and_is_given_back(
        cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        handle = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        await ready(handle)
        (pod_name,) = pods_of(cluster)
        await cluster.on_cluster(cluster.kubelet.kill(pod_name, "OOMKilled"))
        for _ in range(200):
            if k8s.exit_code(handle) is not None:
                break
            await asyncio.sleep(0.05)
        assert k8s.exit_code(handle) == 1
        assert "OOMKilled (exit code 137)" in Path(handle.log_path).read_text()
        await gone(cluster)  # given back: the crashed pod leaves, nothing replaces it until the next start
        replacement = await k8s.start("dep-1", "chat", "rep-2", SPEC, "k")
        await ready(replacement)
    finally:
        await k8s.close()


async def test_a_pod_unschedulable_for_the_bounded_time_means_the_pool_is_full(
        cluster: Cluster, tmp_path: Path) -> None:
    clock = ManualClock()
    k8s = provider(cluster, tmp_path, clock, unschedulable_timeout_s=60)
    cluster.kubelet.capacity = 0
    try:
        start = asyncio.create_task(k8s.start("dep-1", "chat", "rep-1", SPEC, "k"))
        began = clock.now()
        while not start.done() and clock.now() - began < 120:
            await asyncio.sleep(0.02)  # real time for the HTTP calls, then the clock moves on
            if clock.now() - began < 59 or any(
                    c.get("reason") == "Unschedulable" for p in pods_of(cluster).values()
                    for c in p.get("status", {}).get("conditions", [])):
                clock.advance(1)
            assert not start.done() or clock.now() - began >= 60, "full before the bound"
        with pytest.raises(PoolFull, match="Unschedulable"):
            await start
        assert 60 <= clock.now() - began < 70
        await gone(cluster)  # the pending pod is given back
    finally:
        await k8s.close()


async def test_a_new_shape_goes_to_a_new_deployment_while_the_old_pods_keep_serving(
        cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        old = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        await ready(old)
        reshaped = SPEC.with_changes({"engine_args": ["--ttft-ms", "5"]})
        new = await k8s.start("dep-1", "chat", "rep-2", reshaped, "k")
        await ready(new)
        await ready(old)  # untouched: a template change in place would have rolled it
        owners = {p["metadata"]["labels"]["inferstack.io/shape"] for p in pods_of(cluster).values()}
        assert len(owners) == 2
        await k8s.stop(old)
        await gone_but(cluster, 1)
        await ready(new)
    finally:
        await k8s.close()


async def gone_but(cluster: Cluster, left: int, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if len(pods_of(cluster)) == left:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"pods: {sorted(pods_of(cluster))}")


async def test_an_evicted_pod_is_an_exited_replica_with_its_reason(cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        handle = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        (pod_name,) = pods_of(cluster)
        await cluster.on_cluster(cluster.kubelet.evict(pod_name))
        for _ in range(200):
            if k8s.exit_code(handle) is not None:
                break
            await asyncio.sleep(0.05)
        assert k8s.exit_code(handle) == 1
        assert "Evicted" in Path(handle.log_path).read_text()
        replacement = await k8s.start("dep-1", "chat", "rep-2", SPEC, "k")
        await ready(replacement)
    finally:
        await k8s.close()


def objects(cluster: Cluster, plural: str) -> set[str]:
    return {name for (r, _, name), o in cluster.emulator.objects.items() if r.plural == plural and not o.deleted}


async def test_a_new_leader_keeps_the_pods_of_the_replica_ids_it_was_given_and_changes_nothing(
        cluster: Cluster, tmp_path: Path) -> None:
    port = free_port_everywhere()  # one stack's settings: the same pod template on both control planes
    before = provider(cluster, tmp_path / "a", port=port)
    handles = [await before.start("dep-1", "chat", f"rep-{i}", SPEC, "k") for i in (1, 2)]
    for handle in handles:
        await ready(handle)
    pods = {p["metadata"]["annotations"][REPLICA_ANNOTATION]: name for name, p in pods_of(cluster).items()}
    assert await before.hand_over()  # a rolling stop: the pods stay
    after = provider(cluster, tmp_path / "b", port=port)
    try:
        calls = len(cluster.emulator.calls)
        # rep-1 was recorded live, rep-9 too but its pod is gone; rep-2 was not (its row was stopped).
        (kept,) = await after.adopt("dep-1", "chat", SPEC, ["rep-1", "rep-9"])
        assert (kept.replica_id, kept.url) == ("rep-1", handles[0].url)
        assert {c.verb for c in cluster.emulator.calls[calls:]} <= {"get", "list"}  # nothing scaled or claimed
        assert set(pods_of(cluster)) == set(pods.values())
        await ready(handles[0])
        assert after.exit_code(kept) is None and after.serving(kept)
        # A start claims the pod nobody holds, never the kept one, and adds none.
        third = await after.start("dep-1", "chat", "rep-3", SPEC, "k")
        assert third.url == handles[1].url and set(pods_of(cluster)) == set(pods.values())
        # The kept replica is this provider's to stop: exactly its pod goes.
        await after.stop(kept)
        await gone_but(cluster, 1)
        assert set(pods_of(cluster)) == {pods["rep-2"]}
    finally:
        await after.close()


async def set_ready(cluster: Cluster, pod: str, ready: bool) -> None:
    """What the kubelet does when a readiness probe fails or passes again: PATCH the pod's status."""
    condition = "True" if ready else "False"
    async with httpx.AsyncClient(base_url=cluster.url) as http:
        patched = await http.patch(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/status",
            json={"status": {"conditions": [{"type": "PodScheduled", "status": "True"},
                                            {"type": "Ready", "status": condition},
                                            {"type": "ContainersReady", "status": condition}]}},
            headers={"Content-Type": "application/merge-patch+json"})
        patched.raise_for_status()


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time")


async def test_a_replica_serves_only_while_its_pod_is_ready(cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    try:
        handle = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        await until(lambda: k8s.serving(handle))
        (pod,) = pods_of(cluster)
        cluster.kubelet.hands_off.add(pod)
        await set_ready(cluster, pod, False)
        await until(lambda: not k8s.serving(handle))
        assert k8s.exit_code(handle) is None  # not ready is not gone: it may come back
        await set_ready(cluster, pod, True)
        await until(lambda: k8s.serving(handle))
    finally:
        await k8s.close()


async def test_removing_a_deployment_deletes_its_deployments_and_secret_and_nothing_else(
        cluster: Cluster, tmp_path: Path) -> None:
    k8s = provider(cluster, tmp_path)
    other_spec = SPEC.model_copy(update={"name": "other"})
    try:
        old = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        await k8s.start("dep-1", "chat", "rep-2", SPEC.with_changes({"engine_args": ["--ttft-ms", "5"]}), "k")
        other = await k8s.start("dep-2", "other", "rep-3", other_spec, "k2")
        chat_deployments = {d for d in objects(cluster, "deployments") if d.startswith("replicas-chat-")}
        assert len(chat_deployments) == 2 and objects(cluster, "secrets") == {"replicas-chat", "replicas-other"}
        await k8s.stop(old)
        await k8s.remove_deployment("dep-1", "chat")
        assert objects(cluster, "secrets") == {"replicas-other"}
        assert not chat_deployments & objects(cluster, "deployments")
        assert any(d.startswith("replicas-other-") for d in objects(cluster, "deployments"))
        await gone_but(cluster, 1)  # the deleted Deployment's pod went with it
        assert [p["metadata"]["labels"]["inferstack.io/deployment"] for p in pods_of(cluster).values()] == ["other"]
        await ready(other)
        with pytest.raises(ProviderError, match="deleted"):  # a start that was on its way makes nothing
            await k8s.start("dep-1", "chat", "rep-4", SPEC, "k")
    finally:
        await k8s.close()
