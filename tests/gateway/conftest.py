"""Fixtures for the in-process gateway tests (the harness itself is in gateway_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_support import FakeReplica, Harness, Waker, make_deployment

from inferstack.auth import KeyRing
from inferstack.clock import ManualClock
from inferstack.fleet import Fleet
from inferstack.gateway.entry import Gateway
from inferstack.server import open_database


@pytest.fixture
async def replica_server() -> AsyncIterator[FakeReplica]:
    replica = FakeReplica()
    await replica.server.start_server()
    try:
        yield replica
    finally:
        replica.gate.set()
        await replica.server.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    tenant, key = store.create_key("team", 0.0)
    deployment = make_deployment()
    deployment.tenant_id = tenant
    fleet = Fleet()
    fleet.add(deployment)
    clock, waker = ManualClock(), Waker()
    gateway = Gateway(fleet, KeyRing(store, clock), waker, clock, heartbeat_s=0.05)
    await gateway.start()
    try:
        yield Harness(gateway, deployment, clock, waker, tenant, key)
    finally:
        await gateway.close()
        store.engine.dispose()
