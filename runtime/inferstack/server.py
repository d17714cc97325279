"""`inferstack serve`: wire the parts together and run them under uvicorn.

The only place that reads settings and the wall clock and chooses implementations: everything below
receives what it needs (store, clock, provider) from here.
"""

from __future__ import annotations

import logging

import uvicorn

from inferstack.api.app import ControlPlaneApp, build_app
from inferstack.api.deps import Services
from inferstack.auth import KeyRing
from inferstack.batches.runner import BatchRunner
from inferstack.batches.tables import BatchResultRow, BatchRow
from inferstack.clock import Clock, SystemClock
from inferstack.controller.assembly import build_controller
from inferstack.db import Base
from inferstack.files.blobs import blob_store_from_url
from inferstack.files.tables import FileRow
from inferstack.fleet import Fleet
from inferstack.gateway.entry import Gateway
from inferstack.providers.aws import AwsProvider, AwsProviderConfig
from inferstack.providers.base import Provider
from inferstack.providers.kubernetes import KubernetesProvider, KubernetesProviderConfig
from inferstack.providers.kubernetes_cluster import KubernetesCluster, client_from_environment
from inferstack.providers.local import LocalProvider
from inferstack.providers.placing import PlacingProvider
from inferstack.settings import Settings
from inferstack.store import ApiKeyRow, DeploymentRow, EventRow, ReplicaRow, Store, TenantRow

# Every table of the schema, named here so that no table module needs to know the others: the store
# knows nothing of files or batches, and files nothing of batches.
TABLES: tuple[type[Base], ...] = (TenantRow, ApiKeyRow, DeploymentRow, ReplicaRow, EventRow,
                                  FileRow, BatchRow, BatchResultRow)


def open_database(url: str) -> Store:
    """The store at `url`, with every table created that does not exist yet."""
    store = Store(url)
    store.create_schema(TABLES)
    return store


def open_store(settings: Settings) -> Store:
    settings.home.mkdir(parents=True, exist_ok=True)
    return open_database(settings.resolved_database_url)


def build_provider(settings: Settings, clock: Clock) -> Provider:
    """Every provider the settings name, behind placement (providers/placing.py)."""
    return PlacingProvider({name: _provider(name, settings, clock) for name in settings.provider_names})


def _provider(name: str, settings: Settings, clock: Clock) -> Provider:
    if name == "aws":
        return AwsProvider(AwsProviderConfig.from_settings(settings), clock)
    if name == "kubernetes":
        config = KubernetesProviderConfig.from_settings(settings)
        return KubernetesProvider(config, KubernetesCluster(client_from_environment(), config.namespace), clock,
                                  settings.replica_log_dir,
                                  unschedulable_timeout_s=settings.kubernetes.unschedulable_timeout_s)
    return LocalProvider(settings.replica_log_dir, settings.vllm_python)


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    store = open_store(settings)
    if settings.bootstrap_api_key:
        store.ensure_key(settings.bootstrap_tenant, settings.bootstrap_api_key, clock.now())
    keys = KeyRing(store)
    fleet = Fleet()
    provider = build_provider(settings, clock)
    controller = build_controller(store, fleet, provider, clock, tick_s=settings.controller_tick_s)
    gateway = Gateway(fleet, keys, controller.loop, clock, heartbeat_s=settings.heartbeat_s)
    blobs = blob_store_from_url(settings.files_url, settings.files_dir, settings.s3)
    batches = BatchRunner(store, blobs, gateway, clock)
    return Services(settings=settings, store=store, clock=clock, keys=keys, fleet=fleet,
                    controller=controller.loop, actions=controller.actions, gateway=gateway, blobs=blobs,
                    batches=batches)


def create_app(settings: Settings | None = None) -> ControlPlaneApp:
    return build_app(build_services(settings or Settings.from_env()))


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # uvloop + httptools: the fastest pair uvicorn offers for the gateway's hot path.
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="info",
                access_log=False, timeout_graceful_shutdown=30,
                # Nothing reads forwarded-for or these headers; each costs time on every request.
                proxy_headers=False, server_header=False, date_header=False)
