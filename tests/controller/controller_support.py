"""The controller's parts wired in-process around fakes: a provider, a health probe, the manual clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferstack import s3
from inferstack.clock import ManualClock
from inferstack.controller.actions import DeploymentActions
from inferstack.controller.adapters import AdapterSync
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.probes import HealthProbe, Probes
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.fleet import Fleet, LiveDeployment, LiveReplica
from inferstack.lora_fetch import AdapterCache
from inferstack.providers.base import ProviderError, ReplicaHandle
from inferstack.server import open_database
from inferstack.settings import S3Settings
from inferstack.spec import DeploymentSpec
from inferstack.store import ReplicaRow, Store

HEALTH_POLL_S = 0.25


@dataclass
class FakeReplica:
    """A tiny vLLM look-alike: `/health`, `/v1/models` (needs a bearer key) and `/metrics`."""

    url: str = ""
    alive: bool = True
    keys_seen: list[str] = field(default_factory=list)
    loaded: list[dict[str, Any]] = field(default_factory=list)
    """The bodies of `/v1/load_lora_adapter` calls, each answered 200."""


class FakeProvider:
    """Replicas that start at once at `url`; a test makes one exit by setting its exit code."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.exit_codes: dict[str, int] = {}
        self.exit_on_start: int | None = None
        """When set, every replica started from now on has already exited with this code."""
        self.refuse_start: str | None = None
        """When set, every start fails at once with this reason (an engine that cannot run here)."""
        self.closed = False
        self.handed_over = False
        self.refused = 0
        self.placed: str | None = None
        """The provider its handles name (placement sets it): "aws" for replicas off this machine."""

    async def start(self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec,
                    replica_api_key: str) -> ReplicaHandle:
        if self.refuse_start is not None:
            self.refused += 1
            raise ProviderError(self.refuse_start)
        self.started.append(replica_id)
        log_path = self.log_dir / f"{replica_id}.log"
        log_path.write_text("loading weights\nboom: no such model\n")
        if self.exit_on_start is not None:
            self.exit_codes[replica_id] = self.exit_on_start
        return ReplicaHandle(replica_id, self.url, None, str(log_path), provider=self.placed)

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        return self.exit_codes.get(handle.replica_id)

    async def stop(self, handle: ReplicaHandle) -> None:
        self.stopped.append(handle.replica_id)

    async def close(self) -> None:
        self.closed = True

    async def hand_over(self) -> bool:
        """As a cloud provider's: the replicas outlive this control plane, for the next leader."""
        self.handed_over = True
        return True

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        return []  # like local replicas, they go with the process that started them


@dataclass
class FakeProbe:
    """Healthy are the replicas the test names (or every one, with `all_healthy`)."""

    healthy_ids: set[str] = field(default_factory=set)
    all_healthy: bool = False

    async def healthy(self, replica: LiveReplica) -> bool:
        return self.all_healthy or replica.replica_id in self.healthy_ids


@dataclass
class Parts:
    store: Store
    clock: ManualClock
    fleet: Fleet
    provider: FakeProvider
    probes: Probes
    adapters: AdapterSync
    recorder: Recorder
    replicas: ReplicaLifecycle
    loop: ControllerLoop
    actions: DeploymentActions
    tenant: str

    async def create(self, **fields: Any) -> LiveDeployment:
        values: dict[str, Any] = {"hf_model_id": "org/m", "engine": "sim", "hardware_profile": "cpu"} | fields
        return await self.actions.create(self.tenant, DeploymentSpec(**values))

    def events(self, deployment: LiveDeployment, kind: str) -> list[Any]:
        return [e for e in self.store.list_events(deployment.id, 1000) if e.kind == kind]

    def replica_rows(self, deployment: LiveDeployment) -> dict[str, ReplicaRow]:
        return {r.id: r for r in self.store.list_replicas(deployment.id)}

    async def close(self) -> None:
        await self.replicas.close()
        await self.probes.close()
        await self.adapters.close()
        self.store.engine.dispose()


def adapter_cache(tmp_path: Path) -> AdapterCache:
    """S3 adapters fetched as the server fetches them (AWS settings from the environment)."""
    return AdapterCache(tmp_path / "adapters", lambda: s3.client(S3Settings.from_env()))


async def build_parts(tmp_path: Path, replica_url: str, probe: HealthProbe | None = None,
                      database_url: str | None = None, startup_timeout_s: float = 900.0) -> Parts:
    """Every part, as `controller.assembly` wires them, but with no background loop: tests call `reconcile`."""
    store = open_database(database_url or f"sqlite:///{tmp_path / 'state.db'}")
    tenant, _ = store.create_key("t", 0.0)
    clock, fleet = ManualClock(), Fleet()
    provider = FakeProvider(replica_url, tmp_path)
    kick = asyncio.Event()
    probes = Probes()
    await probes.start()
    recorder = Recorder(store, clock)
    replicas = ReplicaLifecycle(provider, recorder, probe or probes, clock, kick.set, health_poll_s=HEALTH_POLL_S,
                                startup_timeout_s=startup_timeout_s)
    adapters = AdapterSync(recorder, adapter_cache(tmp_path))
    await adapters.start()
    loop = ControllerLoop(fleet, recorder, probes, replicas, adapters, clock, kick, tick_s=3600)
    actions = DeploymentActions(fleet, recorder, replicas, adapters, clock, kick.set)
    return Parts(store, clock, fleet, provider, probes, adapters, recorder, replicas, loop, actions, tenant)


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Let background tasks (and the store's threads) run until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await asyncio.sleep(0.01)
    return value
