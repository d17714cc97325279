"""The live picture of every deployment, in memory: what the gateway routes on and the controller steers.

One `LiveDeployment` per deployment, owned by the controller (it alone adds, removes and changes
replicas) and read by the gateway on every request. Both run on the server's one event loop, so no
locks: a request sees a replica set that changes only between its awaits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from inferstack.autoscaler.decision import AutoscalerState
from inferstack.autoscaler.metrics_window import MetricsWindow
from inferstack.autoscaler.shared_window import MergedWindow, WindowShare
from inferstack.lora import split_model
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus


@dataclass
class AdapterStats:
    """One LoRA adapter's traffic: requests, failures, tokens and summed latency."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    """Latency summed over its requests: with `requests`, the mean."""

    def plus(self, other: AdapterStats) -> AdapterStats:
        return AdapterStats(self.requests + other.requests, self.failed + other.failed,
                            self.prompt_tokens + other.prompt_tokens,
                            self.completion_tokens + other.completion_tokens, self.seconds + other.seconds)


@dataclass
class LiveReplica:
    handle: ReplicaHandle
    api_key: str
    status: ReplicaStatus
    started_at: float
    ready_at: float | None = None
    outstanding: int = 0
    batch_outstanding: int = 0
    outdated: bool = False
    """Started under a spec shape that has since changed: serves until a new replica replaces it."""
    engine_running: int | None = None
    """The engine's own `vllm:num_requests_running` at the last scrape (None until scraped)."""
    engine_waiting: int | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    """The LoRA adapters loaded on it, name in the spec -> source: the gateway sends an adapter's requests
    only here. Those it started with count once it is ready; the controller loads the rest."""
    adapter_failures: dict[str, str] = field(default_factory=dict)
    """Adapter source -> why the engine refused to load it: not tried again on this replica."""

    @property
    def replica_id(self) -> str:
        return self.handle.replica_id

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def burst(self) -> bool:
        return self.handle.burst


@dataclass
class LiveDeployment:
    id: str
    tenant_id: str
    name: str
    spec: DeploymentSpec
    status: DeploymentStatus
    status_reason: str
    created_at: float
    awake_since: float
    """When it was created or last woken: the idle timeout counts from here when no request came since."""
    autoscaler_state: AutoscalerState = field(default_factory=AutoscalerState)
    replicas: dict[str, LiveReplica] = field(default_factory=dict)
    metrics: MetricsWindow = field(default_factory=MetricsWindow)
    pending_starts: int = 0
    """Replicas asked of the provider that have no handle yet (a cloud instance takes minutes)."""
    queued: int = 0
    """Requests held by the gateway until a replica is ready."""
    queued_for_slot: int = 0
    """Of those, the ones held while replicas were ready but full: queueing more replicas can fix (the rest
    wait for a wake, which more replicas would not make any sooner)."""
    consecutive_start_failures: int = 0
    failed_attempts: int = 0
    """Times in a row the deployment failed to start: the exponent of its retry backoff."""
    retry_at: float | None = None
    """When a failed deployment is tried again (`controller/backoff.py`); None when no try is due."""
    replica_seconds: float = 0.0
    last_replica_seconds_at: float = 0.0
    ready_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a replica becomes ready or a slot frees: held requests re-check then."""
    row_updated_at: float = 0.0
    """`updated_at` of the store row as this instance last wrote or read it: a newer row was changed
    by another instance (`controller/sync.py`)."""
    wake_seen_at: float = 0.0
    """The last wake-up another instance asked for that the leader has acted on."""
    held_elsewhere_until: float = 0.0
    """Another instance holds a request for this deployment until then (it asked for a wake-up)."""
    adapter_stats: dict[str, AdapterStats] = field(default_factory=dict)
    """Per LoRA adapter name: its requests, tokens and latency counted here since the last exchange round
    (`gateway/adapter_usage.py`)."""
    adapter_totals: dict[str, AdapterStats] = field(default_factory=dict)
    """Per LoRA adapter name: the stored totals of every instance (`controller/adapter_totals.py`)."""

    def adapter_usage(self, adapter: str) -> AdapterStats:
        """An adapter's totals as `status` shows them: stored, plus what this instance has not added yet."""
        return self.adapter_totals.get(adapter, AdapterStats()).plus(self.adapter_stats.get(adapter, AdapterStats()))
    peer_windows: list[WindowShare] = field(default_factory=list)
    """The leader's copy of the other instances' fresh metrics windows (`controller/window_exchange.py`)."""
    observed: MergedWindow | None = None
    """The leader's last observation of it, all instances' traffic added up (set by its controller loop)."""
    merged_window: MergedWindow | None = None
    """The leader's last published `observed`, as every instance shows it (`controller/window_exchange.py`)."""

    def ready_replicas(self, adapter: str | None = None) -> list[LiveReplica]:
        """Ready replicas; with `adapter`, only those that have it loaded."""
        return [r for r in self.replicas.values()
                if r.status is ReplicaStatus.ready and (adapter is None or adapter in r.adapters)]

    def count(self, *statuses: ReplicaStatus) -> int:
        return sum(1 for r in self.replicas.values() if r.status in statuses)

    def traffic(self) -> MergedWindow | None:
        """The leader's published window (the same on every instance) while the controller manages it; None
        once it is stopped or failed (a stale rate would read as traffic that is not there)."""
        return self.merged_window if self.status in DeploymentStatus.managed() else None

    def wanted(self) -> int:
        """Replicas of the current shape that exist or are on their way: starting, ready, or asked of
        the provider. Outdated ones do not count: the autoscaler starts their replacements."""
        live = (ReplicaStatus.starting, ReplicaStatus.ready)
        return sum(1 for r in self.replicas.values() if not r.outdated and r.status in live) + self.pending_starts

    def fresh_start(self, now: float) -> None:
        """Back under the controller's care with failures, their backoff and autoscaler memory forgotten
        (a resume, or a spec change of a failed deployment)."""
        self.awake_since = now
        self.consecutive_start_failures = self.failed_attempts = 0
        self.retry_at = None
        self.status_reason = ""
        self.autoscaler_state = AutoscalerState()

    def take_over(self, restored: LiveDeployment) -> None:
        """This instance starts leading: `restored` is the deployment as the store has it. The object
        stays (requests held here wait on it); the replicas mirrored from the old leader go."""
        for name in ("spec", "status", "status_reason", "awake_since", "autoscaler_state", "replica_seconds",
                     "last_replica_seconds_at", "row_updated_at", "wake_seen_at"):
            setattr(self, name, getattr(restored, name))
        self.replicas.clear()
        self.pending_starts = 0

    def notify(self) -> None:
        """Wake every held request so it re-checks; they clear the event before waiting again."""
        self.ready_changed.set()
        self.ready_changed = asyncio.Event()


class Fleet:
    def __init__(self) -> None:
        self._by_id: dict[str, LiveDeployment] = {}
        self._by_name: dict[tuple[str, str], LiveDeployment] = {}

    def add(self, deployment: LiveDeployment) -> LiveDeployment:
        """Put `deployment` in the fleet and return the live object now there: one already present under
        its id stays (a fleet refresh may take a new row in before its creator adds it; replacing the
        object would forget the replicas started for it and the requests held on it)."""
        present = self._by_id.setdefault(deployment.id, deployment)
        self._by_name[(present.tenant_id, present.name)] = present
        return present

    def remove(self, deployment_id: str) -> None:
        deployment = self._by_id.pop(deployment_id, None)
        if deployment is not None:
            self._by_name.pop((deployment.tenant_id, deployment.name), None)

    def get(self, deployment_id: str) -> LiveDeployment | None:
        return self._by_id.get(deployment_id)

    def resolve(self, tenant_id: str, model: str) -> LiveDeployment | None:
        """`model` is a deployment id or name; another tenant's deployment does not exist for the caller."""
        deployment = self._by_id.get(model)
        if deployment is not None:
            return deployment if deployment.tenant_id == tenant_id else None
        return self._by_name.get((tenant_id, model))

    def resolve_model(self, tenant_id: str, model: str) -> tuple[LiveDeployment, str | None] | None:
        """`model` as callers send it: a deployment (id or name), or `<deployment-name>:<adapter>` for one of
        its LoRA adapters (inferstack/lora.py). None when the caller has no such deployment or adapter."""
        base, adapter = split_model(model)
        if adapter is None:
            deployment = self.resolve(tenant_id, model)
            return None if deployment is None else (deployment, None)
        deployment = self._by_name.get((tenant_id, base))
        if deployment is None or adapter not in {a.name for a in deployment.spec.adapters}:
            return None
        return deployment, adapter

    def all(self) -> list[LiveDeployment]:
        return list(self._by_id.values())
