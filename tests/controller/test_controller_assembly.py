"""The controller with a provider that is slow to start replicas (as cloud instances are)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller_support import adapter_cache

from inferstack.clock import ManualClock
from inferstack.controller.assembly import build_controller
from inferstack.fleet import Fleet
from inferstack.providers.base import ReplicaHandle
from inferstack.server import open_database
from inferstack.spec import DeploymentSpec, DeploymentStatus


class SlowProvider:
    """Starts a replica only when the test says so; records what was stopped."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.stopped: list[str] = []

    async def start(self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec,
                    replica_api_key: str) -> ReplicaHandle:
        await self.release.wait()
        self.started.append(replica_id)
        return ReplicaHandle(replica_id, "http://127.0.0.1:9", None, "")

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        return None

    async def stop(self, handle: ReplicaHandle) -> None:
        self.stopped.append(handle.replica_id)

    async def close(self) -> None:
        pass


async def test_a_slow_start_neither_blocks_the_loop_nor_outlives_a_stop(tmp_path: Path) -> None:
    store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    tenant, _ = store.create_key("t", 0.0)
    provider = SlowProvider()
    controller = build_controller(store, Fleet(), provider, ManualClock(), adapter_cache(tmp_path), tick_s=3600)
    await controller.loop.start()
    try:
        spec = DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="cpu", min_replicas=2,
                              max_replicas=2)
        deployment = await controller.actions.create(tenant, spec)
        decision = await asyncio.wait_for(controller.loop.reconcile(deployment), timeout=2)
        assert decision.desired == 2 and deployment.pending_starts == 2
        # The next pass counts the replicas on their way: it asks for no more.
        await asyncio.wait_for(controller.loop.reconcile(deployment), timeout=2)
        assert deployment.pending_starts == 2 and deployment.status is DeploymentStatus.provisioning
        await controller.actions.stop(deployment)
        provider.release.set()
        for _ in range(100):
            if deployment.pending_starts == 0:
                break
            await asyncio.sleep(0.01)
        assert sorted(provider.stopped) == sorted(provider.started) and len(provider.started) == 2
        assert deployment.replicas == {}
    finally:
        await controller.loop.stop()
