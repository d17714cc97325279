"""The control plane's own state, on the database (`inferstack.db`): a SQLite file by default,
PostgreSQL by URL.

What the control plane must remember across a restart lives here as typed columns or JSON:
tenants and hashed API keys, deployments (spec, status, autoscaler memory), replicas, the scaling
record (events). Files and batches keep their own tables (`files/`, `batches/`). The store is
synchronous; async callers run it in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from inferstack.access import KeyGrant, KeyLimits, KeyScope
from inferstack.db import Base, Database
from inferstack.db_password import RotatingPassword
from inferstack.fencing import fenced_session
from inferstack.secrets_at_rest import TokenCipher, TokenUnreadable
from inferstack.spec import DeploymentSpec, DeploymentStatus, ReplicaStatus


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def hash_key(key: str) -> str:
    # API keys are 32 random bytes: a fast hash is enough (no dictionary to attack), and the
    # gateway can check a key without a slow KDF on every cache miss.
    return hashlib.sha256(key.encode()).hexdigest()


class TenantRow(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added after the first release: `db.add_missing_columns` adds them to an older database, where the
    # keys that exist were all-powerful, hence the server default `admin`.
    scope: Mapped[str] = mapped_column(String(20), default=KeyScope.admin, server_default=KeyScope.admin.value)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_concurrent_requests: Mapped[int | None] = mapped_column(Integer, nullable=True)

    def limits(self) -> KeyLimits:
        return KeyLimits(requests_per_minute=self.requests_per_minute, tokens_per_minute=self.tokens_per_minute,
                         max_concurrent_requests=self.max_concurrent_requests)

    def grant(self) -> KeyGrant:
        return KeyGrant(key_id=self.id, tenant_id=self.tenant_id, scope=KeyScope(self.scope), limits=self.limits(),
                        expires_at=self.expires_at)


_LIVE = text("status != 'deleted'")


class DeploymentRow(Base):
    __tablename__ = "deployments"
    # A name is unique among a tenant's live deployments: a deleted one frees its name for a re-create.
    __table_args__ = (Index("uq_deployments_tenant_live_name", "tenant_id", "name", unique=True,
                            sqlite_where=_LIVE, postgresql_where=_LIVE),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Write-only secret, kept out of `spec` so no serialisation of the spec can leak it; encrypted
    # (`secrets_at_rest.TokenCipher`): only `Store.deployment_spec` can read it.
    hf_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    autoscaler_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    desired_replicas: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_activity_at: Mapped[float] = mapped_column(Float)
    replica_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    wake_requested_at: Mapped[float] = mapped_column(Float, default=0.0)
    """Set by an instance that holds a request for this paused deployment and does not lead: the leader wakes it."""
    removed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """When a leader stopped what ran of this deleted deployment and removed what its provider made for it;
    None while that may still be to do (it was deleted while no instance led)."""


class ReplicaRow(Base):
    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(String(200), default="")
    # Every instance's gateway calls the replica with its key: sealed like the HF tokens (`TokenCipher`),
    # opened by `live_replicas` for the fleet's mirror only; no API response, event or log carries it.
    api_key: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_deployment_at", "deployment_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SealCheckRow(Base):
    """One row: a known text sealed by the first instance on this database. An instance whose key cannot
    open it would write secrets the others cannot read (`Store.check_sealing_key`)."""

    __tablename__ = "seal_check"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)


_SEAL_CHECK = "inferstack seal check"


class KeysDiffer(ValueError):
    """This instance seals secrets under another key than the instances before it on this database."""


class DuplicateName(Exception):
    pass


class KeyRevoked(Exception):
    pass


def new_key() -> str:
    return "isk-" + secrets.token_urlsafe(32)


def _key_row(tenant_id: str, key: str, now: float, scope: KeyScope, expires_at: float | None,
             limits: KeyLimits) -> ApiKeyRow:
    return ApiKeyRow(id=new_id("key"), tenant_id=tenant_id, key_hash=hash_key(key), prefix=key[:8], created_at=now,
                     scope=scope, expires_at=expires_at, **limits.model_dump())


class Store(Database):
    """The database, with the reads and writes of tenants, keys, deployments, replicas and events.
    `cipher` seals HF tokens; without one, a key that lives as long as the process."""

    def __init__(self, url: str, cipher: TokenCipher | None = None, password: RotatingPassword | None = None) -> None:
        super().__init__(url, password)
        self._cipher = cipher or TokenCipher.ephemeral()

    def _sealed_token(self, spec: DeploymentSpec) -> str | None:
        return self._cipher.seal(spec.hf_token.get_secret_value()) if spec.hf_token else None

    def deployment_spec(self, row: DeploymentRow) -> DeploymentSpec:
        """The row's spec with its token decrypted; raises `TokenUnreadable` under another key."""
        token = SecretStr(self._cipher.unseal(row.hf_token)) if row.hf_token else None
        return DeploymentSpec.model_validate({**row.spec, "hf_token": token})

    def restorable_spec(self, row: DeploymentRow) -> tuple[DeploymentSpec, str]:
        """The row's spec, and why it cannot run as stored ("" when it can): a token sealed under
        another key leaves the spec without one, so one such row never stops a control plane."""
        try:
            return self.deployment_spec(row), ""
        except TokenUnreadable as unreadable:
            return DeploymentSpec.model_validate(row.spec), str(unreadable)

    def check_sealing_key(self) -> None:
        """Refuse to run on a database whose secrets were sealed under another key: every instance and
        worker on one database must share INFERSTACK_TOKEN_KEY (or one home's token.key), else each
        would write HF tokens and replica keys that the others cannot open. The first one leaves a check."""
        try:
            with self.session() as s:
                row = s.get(SealCheckRow, 1)
                if row is None:
                    s.add(SealCheckRow(id=1, sealed=self._cipher.seal(_SEAL_CHECK)))
                    return
                sealed = row.sealed
        except IntegrityError:  # another instance starting at the same moment wrote its check first
            with self.session() as s:
                sealed = s.get_one(SealCheckRow, 1).sealed
        try:
            self._cipher.unseal(sealed)
        except TokenUnreadable:
            raise KeysDiffer(
                "the secrets in this database were sealed under another key than this instance's: give every "
                "control-plane instance on one database the same INFERSTACK_TOKEN_KEY (from a secret store), or "
                "run them as `serve --workers N` on one INFERSTACK_HOME") from None

    # --- tenants and keys -------------------------------------------------------------------
    def create_key(self, tenant_name: str, now: float, *, scope: KeyScope = KeyScope.admin,
                   expires_at: float | None = None, limits: KeyLimits | None = None) -> tuple[str, str]:
        """Create the tenant if new, and a key for it. Returns (tenant_id, plaintext key)."""
        key = new_key()
        return self.ensure_key(tenant_name, key, now, scope=scope, expires_at=expires_at, limits=limits), key

    def ensure_key(self, tenant_name: str, key: str, now: float, *, scope: KeyScope = KeyScope.admin,
                   expires_at: float | None = None, limits: KeyLimits | None = None) -> str:
        """Register a key chosen outside (a deployment tool's secret) if it is new. Returns the tenant id."""
        with self.session() as s:
            tenant_id = s.scalar(select(ApiKeyRow.tenant_id).where(ApiKeyRow.key_hash == hash_key(key)))
            if tenant_id is not None:
                return tenant_id
            tenant = s.scalar(select(TenantRow).where(TenantRow.name == tenant_name))
            if tenant is None:
                tenant = TenantRow(id=new_id("ten"), name=tenant_name, created_at=now)
                s.add(tenant)
                s.flush()
            s.add(_key_row(tenant.id, key, now, scope, expires_at, limits or KeyLimits()))
            return tenant.id

    def add_key(self, tenant_id: str, now: float, scope: KeyScope, expires_at: float | None,
                limits: KeyLimits) -> tuple[ApiKeyRow, str]:
        """A new key for an existing tenant: its row and the plaintext key (shown once)."""
        key = new_key()
        row = _key_row(tenant_id, key, now, scope, expires_at, limits)
        with self.session() as s:
            s.add(row)
        return row, key

    def grant_for_key_hash(self, key_hash: str) -> KeyGrant | None:
        """What an unrevoked key grants (its expiry is the caller's to check against its clock)."""
        with self.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None)))
            return row.grant() if row is not None else None

    def list_keys(self, tenant_id: str) -> list[ApiKeyRow]:
        with self.session() as s:
            return list(s.scalars(select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id)
                                  .order_by(ApiKeyRow.created_at, ApiKeyRow.id)))

    def revoke_key(self, tenant_id: str, key_id: str, now: float) -> ApiKeyRow | None:
        """Revoke a key of the tenant's (again is harmless: the first time stands); None if it has none."""
        with self.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None or row.tenant_id != tenant_id:
                return None
            if row.revoked_at is None:
                row.revoked_at = now
            return row

    def rotate_key(self, tenant_id: str, key_id: str, now: float,
                   expires_at: float | None) -> tuple[ApiKeyRow, str] | None:
        """Replace a live key with a new one of the same scope and limits, revoking the old one in the same
        transaction. None if the tenant has no such key; `KeyRevoked` if it is revoked already."""
        key = new_key()
        with self.session() as s:
            old = s.get(ApiKeyRow, key_id)
            if old is None or old.tenant_id != tenant_id:
                return None
            if old.revoked_at is not None:
                raise KeyRevoked(f"key {key_id} was revoked: create a new key instead")
            old.revoked_at = now
            row = _key_row(tenant_id, key, now, KeyScope(old.scope), expires_at, old.limits())
            s.add(row)
        return row, key

    # --- deployments ------------------------------------------------------------------------
    def create_deployment(self, tenant_id: str, spec: DeploymentSpec, now: float) -> DeploymentRow:
        deployment_id = new_id("dep")
        name = spec.name or deployment_id
        row = DeploymentRow(
            id=deployment_id, tenant_id=tenant_id, name=name,
            spec=spec.stored(),
            hf_token=self._sealed_token(spec),
            status=DeploymentStatus.created, status_reason="", autoscaler_state={},
            desired_replicas=0, created_at=now, updated_at=now, last_activity_at=now,
        )
        with self.session() as s:
            clash = s.scalar(select(DeploymentRow.id).where(
                DeploymentRow.tenant_id == tenant_id, DeploymentRow.name == name,
                DeploymentRow.status != DeploymentStatus.deleted))
            if clash:
                raise DuplicateName(f"a deployment named {name!r} already exists ({clash})")
            s.add(row)
        return row

    def get_deployment(self, deployment_id: str) -> DeploymentRow | None:
        with self.session() as s:
            return s.get(DeploymentRow, deployment_id)

    def list_deployments(self, tenant_id: str | None = None, include_deleted: bool = False) -> list[DeploymentRow]:
        query = select(DeploymentRow).order_by(DeploymentRow.created_at)
        if tenant_id is not None:
            query = query.where(DeploymentRow.tenant_id == tenant_id)
        if not include_deleted:
            query = query.where(DeploymentRow.status != DeploymentStatus.deleted)
        with self.session() as s:
            return list(s.scalars(query))

    def deleted_not_removed(self) -> list[DeploymentRow]:
        """Deleted deployments whose replicas and provider objects no leader has removed yet."""
        with self.session() as s:
            return list(s.scalars(select(DeploymentRow).where(DeploymentRow.status == DeploymentStatus.deleted,
                                                              DeploymentRow.removed_at.is_(None))))

    def save_spec(self, deployment_id: str, spec: DeploymentSpec, now: float) -> None:
        with self.session() as s:
            s.execute(update(DeploymentRow).where(DeploymentRow.id == deployment_id).values(
                spec=spec.stored(),
                hf_token=self._sealed_token(spec),
                updated_at=now))

    def update_deployment(self, deployment_id: str, *, fence: int | None = None, **values: Any) -> None:
        with fenced_session(self, fence) as s:
            s.execute(update(DeploymentRow).where(DeploymentRow.id == deployment_id).values(**values))

    # --- replicas ---------------------------------------------------------------------------
    def add_replica(self, row: ReplicaRow, *, fence: int | None = None) -> None:
        if row.api_key:
            row.api_key = self._cipher.seal(row.api_key)
        with fenced_session(self, fence) as s:
            s.add(row)

    def update_replica(self, replica_id: str, *, fence: int | None = None, **values: Any) -> None:
        with fenced_session(self, fence) as s:
            s.execute(update(ReplicaRow).where(ReplicaRow.id == replica_id).values(**values))

    def list_replicas(self, deployment_id: str, live_only: bool = False) -> list[ReplicaRow]:
        query = select(ReplicaRow).where(ReplicaRow.deployment_id == deployment_id).order_by(ReplicaRow.created_at)
        if live_only:
            query = query.where(ReplicaRow.status.in_(list(ReplicaStatus.live())))
        with self.session() as s:
            return list(s.scalars(query))

    def mark_orphaned_replicas(self, now: float, reason: str, kept: set[str] | None = None, *,
                               fence: int | None = None) -> int:
        """When an instance takes the lead: replicas recorded live were the previous leader's, and went
        with it (a local replica dies with its control plane) unless it adopted them (`kept`). Only the
        leader calls this."""
        with fenced_session(self, fence) as s:
            result = s.execute(update(ReplicaRow).where(
                ReplicaRow.status.in_(list(ReplicaStatus.live())), ReplicaRow.id.not_in(sorted(kept or ()))
            ).values(status=ReplicaStatus.stopped, stopped_at=now, reason=reason))
            return result.rowcount or 0

    def live_replicas(self) -> list[ReplicaRow]:
        """Every replica recorded starting, ready or draining, of any deployment, with its key opened (the
        gateway sends it). A key sealed under another key is left empty: `check_sealing_key` refuses such
        an instance at start."""
        with self.session() as s:
            rows = list(s.scalars(select(ReplicaRow).where(ReplicaRow.status.in_(list(ReplicaStatus.live())))
                                  .order_by(ReplicaRow.created_at)))
        for row in rows:  # detached rows: opening the key here writes nothing back
            try:
                row.api_key = self._cipher.unseal(row.api_key) if row.api_key else ""
            except TokenUnreadable:
                row.api_key = ""
        return rows

    def request_wake(self, deployment_id: str, now: float) -> None:
        with self.session() as s:
            s.execute(update(DeploymentRow).where(DeploymentRow.id == deployment_id).values(wake_requested_at=now))

    def set_status_unless_closed(self, deployment_id: str, *, fence: int | None = None, **values: Any) -> bool:
        """The controller's status write: it never overrides a user's stop or delete made meanwhile (on
        another instance, say). Returns whether the row changed."""
        closed = [DeploymentStatus.stopped, DeploymentStatus.deleted]
        with fenced_session(self, fence) as s:
            result = s.execute(update(DeploymentRow).where(
                DeploymentRow.id == deployment_id, DeploymentRow.status.not_in(closed)).values(**values))
            return bool(result.rowcount)

    # --- events -----------------------------------------------------------------------------
    def add_event(self, deployment_id: str, at: float, kind: str, message: str, data: dict[str, Any], *,
                  fence: int | None = None) -> None:
        with fenced_session(self, fence) as s:
            s.add(EventRow(deployment_id=deployment_id, at=at, kind=kind, message=message, data=data))

    def list_events(self, deployment_id: str, limit: int = 100, since: float | None = None) -> Sequence[EventRow]:
        """The newest `limit` events (from `since` on, if given), oldest first."""
        query = select(EventRow).where(EventRow.deployment_id == deployment_id)
        if since is not None:
            query = query.where(EventRow.at >= since)
        with self.session() as s:
            rows = s.scalars(query.order_by(EventRow.id.desc()).limit(limit))
            return list(reversed(list(rows)))
