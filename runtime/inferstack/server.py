"""`inferstack serve`: wire the parts together and run them under uvicorn.

The only place that reads settings and the wall clock and chooses implementations: everything below
receives what it needs (store, clock, provider) from here.
"""

from __future__ import annotations

import logging

import uvicorn

from inferstack.api.app import ControlPlaneApp, build_app
from inferstack.api.deps import Services
from inferstack.api.slow_clients import header_deadline
from inferstack.auth import KeyRing
from inferstack.batches.runner import BatchRunner
from inferstack.batches.tables import BatchResultRow, BatchRow
from inferstack.clock import Clock, SystemClock
from inferstack.controller.assembly import build_controller
from inferstack.db import Base
from inferstack.db_password import RotatingPassword, secrets_manager_password
from inferstack.files.blobs import blob_store_from_url
from inferstack.files.tables import FileRow
from inferstack.fleet import Fleet
from inferstack.gateway.body import BodyLimits
from inferstack.gateway.entry import Gateway
from inferstack.providers.aws import AwsProvider, AwsProviderConfig
from inferstack.providers.base import Provider
from inferstack.providers.local import LocalProvider
from inferstack.secrets_at_rest import TokenCipher, load_or_create_key, make_private
from inferstack.settings import Env, Settings
from inferstack.store import ApiKeyRow, DeploymentRow, EventRow, ReplicaRow, Store, TenantRow

# Every table of the schema, named here so that no table module needs to know the others: the store
# knows nothing of files or batches, and files nothing of batches.
TABLES: tuple[type[Base], ...] = (TenantRow, ApiKeyRow, DeploymentRow, ReplicaRow, EventRow,
                                  FileRow, BatchRow, BatchResultRow)


def open_database(url: str, cipher: TokenCipher | None = None, password: RotatingPassword | None = None) -> Store:
    """The store at `url`, with every table created that does not exist yet."""
    store = Store(url, cipher, password)
    store.create_schema(TABLES)
    return store


def open_store(settings: Settings) -> Store:
    make_private(settings.home)
    cipher = (TokenCipher.from_secret(settings.token_key) if settings.token_key
              else TokenCipher(load_or_create_key(settings.home)))
    password = None
    if settings.database_password_secret:
        password = RotatingPassword(secrets_manager_password(
            settings.database_password_secret, settings.aws.region, settings.aws.endpoint_url))
    return open_database(settings.resolved_database_url, cipher, password)


def build_provider(settings: Settings, clock: Clock) -> Provider:
    if settings.provider == "aws":
        return AwsProvider(AwsProviderConfig.from_settings(settings), clock)
    if settings.provider == "kubernetes":
        # infra's Kubernetes target already declares the platform; the provider is the next piece of work.
        raise ValueError(f"{Env.PROVIDER}=kubernetes has no provider in this version of inferstack: "
                         "replicas run with 'local' or 'aws'")
    local = LocalProvider(settings.replica_log_dir, settings.vllm_python)
    local.reclaim_orphans()  # replicas a killed control plane of this home left behind
    return local


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    store = open_store(settings)
    if settings.bootstrap_api_key:
        store.ensure_key(settings.bootstrap_tenant, settings.bootstrap_api_key, clock.now())
    keys = KeyRing(store, clock)
    fleet = Fleet()
    provider = build_provider(settings, clock)
    controller = build_controller(store, fleet, provider, clock, tick_s=settings.controller_tick_s)
    gateway = Gateway(fleet, keys, controller.loop, clock, heartbeat_s=settings.heartbeat_s,
                      limits=BodyLimits(settings.max_request_bytes, settings.client_timeout_s))
    blobs = blob_store_from_url(settings.files_url, settings.files_dir, settings.s3)
    batches = BatchRunner(store, blobs, gateway, clock)
    return Services(settings=settings, store=store, clock=clock, keys=keys, fleet=fleet,
                    controller=controller.loop, actions=controller.actions, gateway=gateway, blobs=blobs,
                    batches=batches)


def create_app(settings: Settings | None = None) -> ControlPlaneApp:
    return build_app(build_services(settings or Settings.from_env()))


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings or Settings.from_env()
    app = create_app(settings)
    # uvloop + httptools: the fastest pair uvicorn offers for the gateway's hot path.
    uvicorn.run(app, host=host, port=port, loop="uvloop", http=header_deadline(settings.client_timeout_s),
                log_level="info",
                access_log=False, timeout_graceful_shutdown=30,
                # Nothing reads forwarded-for or these headers; each costs time on every request.
                proxy_headers=False, server_header=False, date_header=False)
