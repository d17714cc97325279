"""In-process harness for the Batch API: a real store, blob directory, runner and FastAPI app, with a
fake gateway that answers like a chat deployment. The whole-server tests use `support.ControlPlane`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from batch_support import Api, FakeGateway, make_runner

from inferstack.api.app import build_fastapi
from inferstack.api.deps import Services
from inferstack.auth import KeyRing
from inferstack.clock import SystemClock
from inferstack.files.blobs import LocalBlobStore
from inferstack.fleet import Fleet
from inferstack.settings import Settings
from inferstack.store import Store


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(models={"alice": {"chat", "dep-chat"}, "bob": {"chat"}})


@pytest.fixture
async def api(tmp_path: Path, store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> AsyncIterator[Api]:
    keys = KeyRing(store, SystemClock())
    tokens = {tenant: store.create_key(tenant, time.time()) for tenant in ("alice", "bob")}
    # The fake gateway knows tenants by name; the store by id: map ids onto the names' models.
    gateway.models = {tenant_id: gateway.models[name] for name, (tenant_id, _) in tokens.items()}
    runner = make_runner(store, blobs, gateway)
    services = Services(settings=Settings(home=tmp_path), store=store, clock=SystemClock(), keys=keys,
                        fleet=Fleet(), controller=cast(Any, None), actions=cast(Any, None),
                        gateway=cast(Any, gateway), blobs=blobs, batches=runner)
    app = build_fastapi(services)
    await runner.start()
    clients: dict[str, openai.AsyncOpenAI] = {}
    http: dict[str, httpx.AsyncClient] = {}
    for name, (_, key) in tokens.items():
        transport = httpx.ASGITransport(app=app)
        http[name] = httpx.AsyncClient(transport=transport, base_url="http://inferstack",
                                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
        clients[name] = openai.AsyncOpenAI(api_key=key, base_url="http://inferstack/v1", max_retries=0,
                                           http_client=httpx.AsyncClient(transport=transport, timeout=30))
    try:
        yield Api(services, gateway, clients, http)
    finally:
        await runner.stop()
        for client in clients.values():
            await client.close()
        for h in http.values():
            await h.aclose()
