"""`inferstack serve`: wire the parts together and run them under uvicorn.

The only place that reads settings and the wall clock and chooses implementations: everything below
receives what it needs (store, clock, provider) from here.
"""

from __future__ import annotations

import logging

import uvicorn

from inferstack import s3
from inferstack.api.app import ControlPlaneApp, build_app
from inferstack.api.deps import Services
from inferstack.api.slow_clients import header_deadline
from inferstack.auth import KeyRing
from inferstack.batches.runner import BatchRunner
from inferstack.batches.tables import BatchResultRow, BatchRow
from inferstack.clock import Clock, SystemClock
from inferstack.controller.adapter_totals import AdapterUsageRow
from inferstack.controller.assembly import build_controller
from inferstack.controller.leadership import (
    FileLeadership,
    Leadership,
    PostgresLeadership,
    check_single_host,
    instance_identity,
)
from inferstack.controller.sync import ChangeFeed, PollingFeed, PostgresFeed
from inferstack.controller.window_exchange import InstanceWindowRow
from inferstack.db import Base
from inferstack.db_password import RotatingPassword, secrets_manager_password
from inferstack.fencing import LeaderLeaseRow
from inferstack.files.blobs import blob_store_from_url
from inferstack.files.tables import FileRow
from inferstack.fleet import Fleet
from inferstack.gateway.body import BodyLimits
from inferstack.gateway.entry import Gateway
from inferstack.history.table import HistoryRow
from inferstack.lora_fetch import AdapterCache
from inferstack.providers.aws import AwsProvider, AwsProviderConfig
from inferstack.providers.base import Provider
from inferstack.providers.kubernetes import KubernetesProvider, KubernetesProviderConfig
from inferstack.providers.kubernetes_cluster import KubernetesCluster, client_from_environment
from inferstack.providers.local import LocalProvider
from inferstack.providers.placing import PlacingProvider
from inferstack.secrets_at_rest import TokenCipher, load_or_create_key, make_private
from inferstack.settings import Settings
from inferstack.store import (
    ApiKeyRow,
    DeploymentRow,
    EventRow,
    ReplicaRow,
    SealCheckRow,
    Store,
    TenantRow,
)

# Every table of the schema, named here so that no table module needs to know the others: the store
# knows nothing of files or batches, and files nothing of batches.
TABLES: tuple[type[Base], ...] = (TenantRow, ApiKeyRow, DeploymentRow, ReplicaRow, EventRow,
                                  FileRow, BatchRow, BatchResultRow, LeaderLeaseRow, SealCheckRow,
                                  InstanceWindowRow, HistoryRow, AdapterUsageRow)


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
    store = open_database(settings.resolved_database_url, cipher, password)
    store.check_sealing_key()
    return store


def adapter_cache(settings: Settings) -> AdapterCache:
    """S3 adapters for the replicas on this machine, fetched under the home with the file store's S3 settings."""
    return AdapterCache(settings.home / "adapters", lambda: s3.client(settings.s3))


def build_provider(settings: Settings, clock: Clock, adapters: AdapterCache) -> Provider:
    """Every provider the settings name, behind placement (providers/placing.py)."""
    return PlacingProvider({name: _provider(name, settings, clock, adapters) for name in settings.provider_names})


def _provider(name: str, settings: Settings, clock: Clock, adapters: AdapterCache) -> Provider:
    if name == "aws":
        return AwsProvider(AwsProviderConfig.from_settings(settings), clock)
    if name == "kubernetes":
        config = KubernetesProviderConfig.from_settings(settings)
        return KubernetesProvider(config, KubernetesCluster(client_from_environment(), config.namespace), clock,
                                  settings.replica_log_dir,
                                  unschedulable_timeout_s=settings.kubernetes.unschedulable_timeout_s)
    local = LocalProvider(settings.replica_log_dir, settings.vllm_python, adapters)
    local.reclaim_orphans()  # replicas a killed control plane of this home left behind
    adapters.prune()  # no local engine runs yet: older copies of an adapter are no one's
    return local


def coordination(settings: Settings, store: Store, clock: Clock, holder: str, host: str) -> tuple[Leadership,
                                                                                                 ChangeFeed]:
    """How this instance finds the leader and hears of the others' changes: through PostgreSQL, or on
    SQLite through a file lock and a short resync (one host only: a second host is refused here)."""
    if store.url.startswith("sqlite"):
        check_single_host(store, host, clock.now())
        return FileLeadership(store, settings.home / "leader.lock", holder, host, clock.now), PollingFeed()
    return PostgresLeadership(store, holder, host, clock.now), PostgresFeed(store.url)


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    store = open_store(settings)
    if settings.bootstrap_api_key:
        store.ensure_key(settings.bootstrap_tenant, settings.bootstrap_api_key, clock.now())
    keys = KeyRing(store, clock)
    fleet = Fleet()
    adapters = adapter_cache(settings)
    provider = build_provider(settings, clock, adapters)
    holder, host = instance_identity()
    leadership, feed = coordination(settings, store, clock, holder, host)
    controller = build_controller(store, fleet, provider, clock, adapters, tick_s=settings.controller_tick_s,
                                  leadership=leadership, feed=feed, instance_id=holder,
                                  history_interval_s=settings.history_interval_s)
    gateway = Gateway(fleet, keys, controller.instance, clock, heartbeat_s=settings.heartbeat_s,
                      limits=BodyLimits(settings.max_request_bytes, settings.client_timeout_s))
    blobs = blob_store_from_url(settings.files_url, settings.files_dir, settings.s3)
    batches = BatchRunner(store, blobs, gateway, clock)
    return Services(settings=settings, store=store, clock=clock, keys=keys, fleet=fleet,
                    controller=controller.instance, actions=controller.actions, gateway=gateway, blobs=blobs,
                    batches=batches)


def create_app(settings: Settings | None = None) -> ControlPlaneApp:
    return build_app(build_services(settings or Settings.from_env()))


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def worker_app() -> ControlPlaneApp:
    """What each of `serve --workers N`'s processes runs (uvicorn starts them fresh, by import string)."""
    configure_logging()
    return create_app()


def serve(host: str, port: int, settings: Settings | None = None, *, workers: int = 1) -> None:
    """`workers` > 1: uvicorn binds the socket once and runs that many processes on it, each a whole
    instance (API, gateway, fleet sync) that reads its settings from the environment (`settings` is
    for one worker only); one of them leads."""
    configure_logging()
    settings = settings or Settings.from_env()
    app: ControlPlaneApp | str = "inferstack.server:worker_app"
    http: type | str = "inferstack.api.slow_clients:WorkerHeaderDeadlineProtocol"
    if workers == 1:
        app, http = create_app(settings), header_deadline(settings.client_timeout_s)
    else:  # checked once in the parent: a bad setting or a second host fails with its message, not N times
        coordination(settings, open_store(settings), SystemClock(), *instance_identity())
    # uvloop + httptools (under the header deadline): the fastest pair uvicorn offers for the hot path.
    uvicorn.run(app, host=host, port=port, workers=workers, factory=workers > 1, loop="uvloop", http=http,
                log_level="info",
                access_log=False, timeout_graceful_shutdown=30,
                # Nothing reads forwarded-for or these headers; each costs time on every request.
                proxy_headers=False, server_header=False, date_header=False)
