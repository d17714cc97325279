"""A deployment that cannot start: it stays failed with its cause and is tried again after a backoff."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from controller_support import FakeProbe, Parts, build_parts, eventually

from inferstack.controller.backoff import RETRY_CAP_S, retry_delay
from inferstack.spec import DeploymentStatus, DeploymentUpdate

CAUSE = "engine 'vllm' needs a Python environment with vLLM: set INFERSTACK_VLLM_PYTHON"


@pytest.mark.parametrize(("failures", "delay"), [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (10_000, 300.0)])
def test_the_retry_delay_doubles_from_2_s_up_to_its_cap(failures: int, delay: float) -> None:
    assert retry_delay(failures) == delay


@pytest.fixture
async def refusing(tmp_path: Path) -> AsyncIterator[Parts]:
    """Parts whose provider cannot start any replica (like the vllm engine without a vLLM environment)."""
    parts = await build_parts(tmp_path, "http://127.0.0.1:9", FakeProbe(all_healthy=True))
    parts.provider.refuse_start = CAUSE
    yield parts
    await parts.close()


async def run_for(parts: Parts, seconds: float, step: float = 0.5) -> list[DeploymentStatus]:
    """Tick the loop every `step` of virtual time for `seconds`; the statuses seen after each tick."""
    seen = []
    for _ in range(int(seconds / step)):
        await parts.loop.tick()
        await asyncio.sleep(0)  # let the start tasks run
        await asyncio.sleep(0)
        seen.append(next(iter(parts.fleet.all())).status)
        parts.clock.advance(step)
    return seen


async def test_it_stays_failed_with_its_cause_and_tries_again_ever_more_rarely(refusing: Parts) -> None:
    parts = refusing
    deployment = await parts.create()
    statuses = await run_for(parts, 600.0)

    first_failure = statuses.index(DeploymentStatus.failed)
    assert set(statuses[first_failure:]) == {DeploymentStatus.failed}  # no flapping back to provisioning
    assert deployment.status_reason == CAUSE
    assert parts.store.get_deployment(deployment.id).status_reason == CAUSE
    tries = [e.at for e in parts.events(deployment, "start_failed")]
    assert CAUSE in parts.events(deployment, "start_failed")[0].message
    # Tried at 0, then 2, 4, 8, ... s later: 9 tries in 10 minutes instead of one a tick.
    assert [round(b - a) for a, b in itertools.pairwise(tries)] == [2, 4, 8, 16, 32, 64, 128, 256]
    assert parts.provider.refused == len(tries) == 9
    events = parts.store.list_events(deployment.id, 10_000)
    assert len(events) <= 2 * len(tries) + 2, [e.kind for e in events]  # a bounded record: 2 events a try
    assert [e.data["after"] for e in events if e.kind == "status"][-1:] == ["failed"]  # once, never left


async def test_the_backoff_is_capped(refusing: Parts) -> None:
    deployment = await refusing.create()
    await run_for(refusing, 1200.0, step=2.0)
    tries = [e.at for e in refusing.events(deployment, "start_failed")]
    assert max(b - a for a, b in itertools.pairwise(tries)) == pytest.approx(RETRY_CAP_S, abs=2.0)


async def test_a_spec_change_or_resume_tries_again_at_once(refusing: Parts) -> None:
    parts = refusing
    deployment = await parts.create()
    await run_for(parts, 3.0)  # two failures: the next try is 4 s away
    assert deployment.status is DeploymentStatus.failed and parts.provider.refused == 2

    parts.provider.refuse_start = None  # the cause is gone (say, vLLM got installed)
    await parts.actions.update(deployment, DeploymentUpdate(target_rps=5.0))
    await parts.loop.tick()
    await eventually(lambda: deployment.status is DeploymentStatus.running)
    assert deployment.status_reason == "" and len(parts.provider.started) == 1

    parts.provider.refuse_start = CAUSE
    await parts.actions.stop(deployment)
    await parts.actions.resume(deployment)
    await parts.loop.tick()
    await eventually(lambda: deployment.status is DeploymentStatus.failed)
    refused = parts.provider.refused
    parts.provider.refuse_start = None
    await parts.actions.resume(deployment)  # at once, though the backoff would wait 2 s
    await parts.loop.tick()
    await eventually(lambda: deployment.status is DeploymentStatus.running)
    assert parts.provider.refused == refused and len(parts.provider.started) == 2


async def test_a_replica_that_never_turns_healthy_counts_as_a_failed_start(tmp_path: Path) -> None:
    parts = await build_parts(tmp_path, "http://127.0.0.1:9", FakeProbe(), startup_timeout_s=10.0)  # never healthy
    try:
        deployment = await parts.create()
        for _ in range(200):
            await parts.loop.tick()
            await asyncio.sleep(0.01)
            parts.clock.advance(1.0)
            if deployment.status is DeploymentStatus.failed:
                break
        assert deployment.status is DeploymentStatus.failed
        assert deployment.status_reason == "3 replicas in a row failed to start; last: not healthy within 10 s"
    finally:
        await parts.close()
