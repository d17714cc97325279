"""Build the controller's parts around one fleet, store, provider and clock, wired to each other once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferstack.clock import Clock
from inferstack.controller.actions import DeploymentActions
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.probes import Probes
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.fleet import Fleet
from inferstack.providers.base import Provider
from inferstack.store import Store


@dataclass(frozen=True)
class ControllerParts:
    loop: ControllerLoop
    """Started and stopped with the server; the gateway asks it to wake deployments."""
    actions: DeploymentActions
    """What the API calls."""


def build_controller(store: Store, fleet: Fleet, provider: Provider, clock: Clock, *,
                     tick_s: float = 1.0) -> ControllerParts:
    kick = asyncio.Event()  # set by the lifecycle and the actions to ask the loop for a pass now
    probes = Probes()
    recorder = Recorder(store, clock)
    replicas = ReplicaLifecycle(provider, recorder, probes, clock, kick.set)
    return ControllerParts(loop=ControllerLoop(fleet, recorder, probes, replicas, clock, kick, tick_s=tick_s),
                           actions=DeploymentActions(fleet, recorder, replicas, clock, kick.set))
