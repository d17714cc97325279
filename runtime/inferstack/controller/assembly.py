"""Build the controller's parts around one fleet, store, provider and clock, wired to each other once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferstack.clock import Clock
from inferstack.controller.actions import DeploymentActions
from inferstack.controller.loop import ControllerLoop
from inferstack.controller.probes import HealthProbe, Probes
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
    replicas: ReplicaLifecycle
    recorder: Recorder


def build_controller(store: Store, fleet: Fleet, provider: Provider, clock: Clock, *, tick_s: float = 1.0,
                     health_probe: HealthProbe | None = None, startup_timeout_s: float = 900.0,
                     health_poll_s: float = 0.25) -> ControllerParts:
    """`health_probe` replaces the HTTP health check (tests); engine gauges are still scraped over HTTP."""
    kick = asyncio.Event()
    probes = Probes()
    recorder = Recorder(store, clock)
    replicas = ReplicaLifecycle(provider, recorder, health_probe or probes, clock, kick.set,
                                startup_timeout_s=startup_timeout_s, health_poll_s=health_poll_s)
    loop = ControllerLoop(fleet, recorder, probes, replicas, clock, kick, tick_s=tick_s)
    return ControllerParts(loop=loop, actions=DeploymentActions(fleet, recorder, replicas, clock, kick.set),
                           replicas=replicas, recorder=recorder)
