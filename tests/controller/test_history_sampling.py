"""What the leader samples for the charts and shows at `/metrics`: a stopped deployment has no traffic,
and a deployment that is gone loses its series."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from controller_support import FakeProbe, FakeReplica, Parts, build_parts, eventually
from prometheus_client import REGISTRY

from inferstack.autoscaler.metrics_window import WindowStats
from inferstack.autoscaler.shared_window import MergedWindow
from inferstack.controller.gauges import DeploymentGauges
from inferstack.controller.history import sample_of
from inferstack.history.series import Sample


@pytest.fixture
async def parts(tmp_path: Path, fake_replica: FakeReplica) -> AsyncIterator[Parts]:
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    yield parts
    await parts.close()


async def test_a_sample_has_the_published_window_while_managed_and_no_traffic_once_stopped(parts: Parts) -> None:
    deployment = await parts.create(hardware_profile="gpu.l4", min_replicas=2, max_replicas=3)
    await parts.loop.reconcile(deployment)
    await eventually(lambda: len(deployment.ready_replicas()) == 2)
    deployment.merged_window = MergedWindow(
        WindowStats(rps=4.5, completion_rps=4.0, p95_latency_ms=310.0, p95_ttft_ms=90.0), 1, parts.clock.now())
    sample = sample_of(deployment, parts.clock.now())
    assert (sample.arrivals_rps, sample.completions_rps, sample.p95_latency_ms, sample.p95_ttft_ms) == (
        4.5, 4.0, 310.0, 90.0)
    assert (sample.ready, sample.min_replicas, sample.max_replicas) == (2, 2, 3)
    assert sample.usd_per_hour == pytest.approx(2 * deployment.spec.price_per_replica_hour)

    await parts.actions.stop(deployment)
    stopped = sample_of(deployment, parts.clock.now())
    assert (stopped.arrivals_rps, stopped.p95_latency_ms, stopped.ready) == (0.0, None, 0)


def test_gauges_show_each_sampled_deployment_and_drop_one_that_is_gone() -> None:
    gauges = DeploymentGauges()

    def ready(deployment_id: str) -> float | None:
        return REGISTRY.get_sample_value("inferstack_deployment_replicas",
                                         {"deployment": deployment_id, "status": "ready"})

    gauges.show([("dep-gauge-a", Sample(at=1.0, ready=3, p95_latency_ms=250.0)), ("dep-gauge-b", Sample(at=1.0))])
    assert ready("dep-gauge-a") == 3
    assert REGISTRY.get_sample_value("inferstack_deployment_latency_ms",
                                     {"deployment": "dep-gauge-a", "quantile": "p95"}) == 250.0
    gauges.show([("dep-gauge-b", Sample(at=2.0, ready=1))])
    assert ready("dep-gauge-a") is None
    assert REGISTRY.get_sample_value("inferstack_deployment_cost_usd", {"deployment": "dep-gauge-a"}) is None
    assert ready("dep-gauge-b") == 1
