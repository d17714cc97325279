"""Build the controller's parts around one fleet, store, provider and clock, wired to each other once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferstack.clock import Clock
from inferstack.controller.actions import DeploymentActions
from inferstack.controller.adapters import AdapterSync
from inferstack.controller.history import HistorySampler
from inferstack.controller.instance import Instance
from inferstack.controller.leadership import Leadership, SoleLeadership
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.probes import Probes
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.controller.sync import ChangeFeed, FleetSync, PollingFeed
from inferstack.controller.window_exchange import WindowExchange
from inferstack.fleet import Fleet
from inferstack.lora_fetch import AdapterCache
from inferstack.providers.base import Provider
from inferstack.store import Store


@dataclass(frozen=True)
class ControllerParts:
    loop: ControllerLoop
    """Runs while this instance leads; the gateway asks it to wake deployments through `instance`."""
    actions: DeploymentActions
    """What the API calls."""
    instance: Instance
    """Started and stopped with the server: elects the leader and keeps the fleet in sync."""


def build_controller(store: Store, fleet: Fleet, provider: Provider, clock: Clock, adapter_cache: AdapterCache, *,
                     tick_s: float = 1.0,
                     leadership: Leadership | None = None, feed: ChangeFeed | None = None,
                     instance_id: str = "solo", history_interval_s: float | None = None) -> ControllerParts:
    """Without `leadership` the instance is alone and leads; without `feed` other instances' changes
    arrive by a short-interval resync only. `instance_id` names its published metrics windows. With
    `history_interval_s` the leader samples every deployment that often for the charts (`history/`)."""
    kick = asyncio.Event()  # set by the lifecycle and the actions to ask the loop for a pass now
    feed = feed or PollingFeed()
    probes = Probes()
    leader = leadership or SoleLeadership()
    recorder = Recorder(store, clock, feed.announce, fence=lambda: leader.epoch)
    replicas = ReplicaLifecycle(provider, recorder, probes, clock, kick.set)
    history = HistorySampler(store, history_interval_s) if history_interval_s else None
    adapters = AdapterSync(recorder, adapter_cache)
    loop = ControllerLoop(fleet, recorder, probes, replicas, adapters, clock, kick, tick_s=tick_s, history=history)
    sync = FleetSync(store, fleet, feed, replicas, clock, kick.set, resync_s=feed.resync_s)
    windows = WindowExchange(store, fleet, clock, instance_id, fence=lambda: leader.epoch)
    instance = Instance(loop, leader, sync, windows)
    actions = DeploymentActions(fleet, recorder, replicas, adapters, clock, kick.set,
                                leading=lambda: instance.leading)
    return ControllerParts(loop=loop, actions=actions, instance=instance)
