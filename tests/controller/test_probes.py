"""The HTTP probes against a tiny vLLM look-alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from controller_support import FakeReplica

from inferstack.controller.probes import Probes
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus


def replica(url: str, key: str = "k", status: ReplicaStatus = ReplicaStatus.ready) -> LiveReplica:
    return LiveReplica(handle=ReplicaHandle("rep-1", url, None, ""), api_key=key, status=status, started_at=0.0)


@pytest.fixture
async def probes() -> AsyncIterator[Probes]:
    probes = Probes()
    await probes.start()
    yield probes
    await probes.close()


async def test_healthy_needs_health_and_the_model_list_with_the_replicas_key(
        probes: Probes, fake_replica: FakeReplica) -> None:
    assert await probes.healthy(replica(fake_replica.url, key="secret"))
    assert fake_replica.keys_seen == ["secret"]
    assert not await probes.healthy(replica(fake_replica.url, key=""))  # /v1/models refuses: not ready
    fake_replica.alive = False
    assert not await probes.healthy(replica(fake_replica.url))
    assert not await probes.healthy(replica("http://127.0.0.1:9"))  # nothing listening


async def test_scraping_reads_the_engine_queues_of_ready_replicas(probes: Probes, fake_replica: FakeReplica) -> None:
    deployment = LiveDeployment(id="dep-1", tenant_id="t", name="d",
                                spec=DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="cpu"),
                                status=DeploymentStatus.running, status_reason="", created_at=0.0, awake_since=0.0)
    ready = deployment.replicas["rep-1"] = replica(fake_replica.url)
    await probes.scrape_engines(deployment)
    assert (ready.engine_running, ready.engine_waiting) == (2, 1)
