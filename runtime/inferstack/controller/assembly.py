"""Build the controller's parts around one fleet, store, provider and clock, wired to each other once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferstack.clock import Clock
from inferstack.controller.actions import DeploymentActions
from inferstack.controller.adapters import AdapterSync
from inferstack.controller.instance import Instance
from inferstack.controller.leadership import Leadership, SoleLeadership
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.probes import Probes
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.controller.sync import ChangeFeed, FleetSync, PollingFeed
from inferstack.controller.window_exchange import WindowExchange
from inferstack.fleet import Fleet
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


def build_controller(store: Store, fleet: Fleet, provider: Provider, clock: Clock, *, tick_s: float = 1.0,
                     leadership: Leadership | None = None, feed: ChangeFeed | None = None,
                     instance_id: str = "solo") -> ControllerParts:
    """Without `leadership` the instance is alone and leads; without `feed` other instances' changes
    arrive by a short-interval resync only. `instance_id` names its published metrics windows."""
    kick = asyncio.Event()  # set by the lifecycle and the actions to ask the loop for a pass now
    feed = feed or PollingFeed()
    probes = Probes()
    recorder = Recorder(store, clock, feed.announce)
    replicas = ReplicaLifecycle(provider, recorder, probes, clock, kick.set)
    adapters = AdapterSync(recorder)
    loop = ControllerLoop(fleet, recorder, probes, replicas, adapters, clock, kick, tick_s=tick_s)
    sync = FleetSync(store, fleet, feed, replicas, clock, kick.set, resync_s=feed.resync_s)
    windows = WindowExchange(store, fleet, clock, instance_id)
    instance = Instance(loop, leadership or SoleLeadership(), sync, windows)
    actions = DeploymentActions(fleet, recorder, replicas, adapters, clock, kick.set,
                                leading=lambda: instance.leading)
    return ControllerParts(loop=loop, actions=actions, instance=instance)
