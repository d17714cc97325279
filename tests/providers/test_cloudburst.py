"""Cloudburst: Kubernetes first, AWS (a moto server) when the cluster is full. With the node pool full
at 2 pods, a 4-replica deployment runs 2 pods and 2 EC2 instances; scaling down to 2 removes the AWS
ones first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_aws_provider import Cloud, cloud, make_provider  # noqa: F401 (cloud is a fixture)

from inferstack.autoscaler.victims import choose_victims
from inferstack.clock import SystemClock
from inferstack.fleet import LiveReplica
from inferstack.providers.base import ProviderError
from inferstack.providers.kubernetes import KubernetesProvider, KubernetesProviderConfig
from inferstack.providers.kubernetes_cluster import KubernetesCluster
from inferstack.providers.placing import PlacingProvider
from inferstack.spec import DeploymentSpec, ReplicaStatus
from kube_cluster import Cluster, free_port_everywhere, running_cluster

SPEC = DeploymentSpec(name="chat", hf_model_id="inferstack/sim-chat", engine="sim", hardware_profile="gpu.l4",
                      max_replicas=4, providers=["kubernetes", "aws"], cloudburst=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "pods") as running:
        running.kubelet.capacity = 2  # the GPU node pool holds two replicas
        yield running


def placing(cluster: Cluster, cloud: Cloud, tmp_path: Path) -> PlacingProvider:  # noqa: F811
    config = KubernetesProviderConfig(namespace="inferstack", replica_port=free_port_everywhere())
    k8s = KubernetesProvider(config, KubernetesCluster(cluster.client(tmp_path, "inferstack"), "inferstack"),
                             SystemClock(), tmp_path / "logs", poll_s=0.05, unschedulable_timeout_s=0.3)
    return PlacingProvider({"kubernetes": k8s, "aws": make_provider(cloud)})


async def test_a_full_cluster_bursts_to_aws_and_the_burst_replicas_go_first(
        cluster: Cluster, cloud: Cloud, tmp_path: Path) -> None:  # noqa: F811
    provider = placing(cluster, cloud, tmp_path)
    try:
        handles = await asyncio.gather(*(provider.start("dep-1", "chat", f"rep-{i}", SPEC, "k") for i in range(4)))
        assert sorted(h.provider for h in handles) == ["aws", "aws", "kubernetes", "kubernetes"]
        assert all(h.burst == (h.provider == "aws") for h in handles)
        for _ in range(100):  # the unschedulable pods were given back
            if len(cluster.kubelet.pods("inferstack")) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(cluster.kubelet.pods("inferstack")) == 2
        assert len(cloud.members("chat")) == 2

        # Scale 4 -> 2: the controller's choice takes the AWS replicas, though they are the least busy.
        live = [LiveReplica(handle=h, api_key="k", status=ReplicaStatus.ready, started_at=float(i),
                            outstanding=0 if h.burst else 1) for i, h in enumerate(handles)]
        victims = choose_victims(live, 2)
        assert {v.handle.provider for v in victims} == {"aws"}
        for victim in victims:
            await provider.stop(victim.handle)
        assert cloud.members("chat") == []
        assert len(cluster.kubelet.pods("inferstack")) == 2
    finally:
        await provider.close()


async def test_without_cloudburst_a_full_cluster_is_an_error_that_says_so(
        cluster: Cluster, cloud: Cloud, tmp_path: Path) -> None:  # noqa: F811
    provider = placing(cluster, cloud, tmp_path)
    try:
        spec = SPEC.model_copy(update={"cloudburst": False})
        await asyncio.gather(*(provider.start("dep-1", "chat", f"rep-{i}", spec, "k") for i in range(2)))
        full = r"no provider has room \(cloudburst is off\): kubernetes: .*Unschedulable"
        with pytest.raises(ProviderError, match=full):
            await provider.start("dep-1", "chat", "rep-3", spec, "k")
        assert len(cloud.ec2.describe_instances()["Reservations"]) == 0
    finally:
        await provider.close()
