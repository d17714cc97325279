"""API keys in the store, on SQLite and PostgreSQL: scopes, limits, expiry, revoke, rotate, and the
migration that adds their columns to a database made by the previous version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from inferstack.access import KeyLimits, KeyScope
from inferstack.db import add_missing_columns
from inferstack.server import TABLES, open_database
from inferstack.store import KeyRevoked, Store, hash_key
from support import postgres_schema

LIMITS = KeyLimits(requests_per_minute=60, tokens_per_minute=10_000, max_concurrent_requests=4)


def test_a_key_grants_its_scope_limits_and_expiry_until_revoked(store: Store) -> None:
    tenant, admin_key = store.create_key("acme", now=1.0)
    row, key = store.add_key(tenant, now=2.0, scope=KeyScope.inference, expires_at=3600.0, limits=LIMITS)
    grant = store.grant_for_key_hash(hash_key(key))
    assert grant is not None and (grant.key_id, grant.tenant_id, grant.scope) == (row.id, tenant, KeyScope.inference)
    assert grant.limits == LIMITS and grant.expires_at == 3600.0 and grant.expired(3600.0)
    admin = store.grant_for_key_hash(hash_key(admin_key))
    assert admin is not None and admin.scope is KeyScope.admin and admin.limits.unlimited()
    assert [k.id for k in store.list_keys(tenant)] == [admin.key_id, row.id]

    revoked = store.revoke_key(tenant, row.id, now=5.0)
    assert revoked is not None and revoked.revoked_at == 5.0
    assert store.grant_for_key_hash(hash_key(key)) is None
    assert store.revoke_key(tenant, row.id, now=9.0).revoked_at == 5.0  # type: ignore[union-attr]


def test_another_tenants_key_cannot_be_revoked_or_rotated(store: Store) -> None:
    acme, _ = store.create_key("acme", now=1.0)
    other, other_key = store.create_key("other", now=1.0)
    other_id = store.list_keys(other)[0].id
    assert store.revoke_key(acme, other_id, now=2.0) is None
    assert store.rotate_key(acme, other_id, now=2.0, expires_at=None) is None
    assert store.grant_for_key_hash(hash_key(other_key)) is not None
    assert [k.id for k in store.list_keys(acme)] != [other_id]


def test_rotation_keeps_scope_and_limits_and_revokes_the_old_key_at_once(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    old, old_key = store.add_key(tenant, now=1.0, scope=KeyScope.inference, expires_at=None, limits=LIMITS)
    rotated = store.rotate_key(tenant, old.id, now=2.0, expires_at=100.0)
    assert rotated is not None
    new, new_key = rotated
    assert new_key != old_key and new.id != old.id
    assert store.grant_for_key_hash(hash_key(old_key)) is None
    grant = store.grant_for_key_hash(hash_key(new_key))
    assert grant is not None and grant.scope is KeyScope.inference and grant.limits == LIMITS
    assert grant.expires_at == 100.0
    with pytest.raises(KeyRevoked):
        store.rotate_key(tenant, old.id, now=3.0, expires_at=None)


# The api_keys table as the previous version created it (before scopes, expiry and limits).
OLD_TABLES = """
create table tenants (id varchar(40) primary key, name varchar(100) unique, created_at float);
create table api_keys (id varchar(40) primary key, tenant_id varchar(40) references tenants(id),
                       key_hash varchar(64) unique, prefix varchar(16), created_at float, revoked_at float);
insert into tenants values ('ten-old', 'veteran', 1.0);
insert into api_keys values ('key-old', 'ten-old', '{digest}', 'isk-abcd', 1.0, null);
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite"
               else stack.enter_context(postgres_schema()))
        engine = create_engine(url)
        with engine.begin() as connection:
            for statement in OLD_TABLES.format(digest=hash_key("isk-old-key")).split(";"):
                if statement.strip():
                    connection.execute(text(statement))
        engine.dispose()
        yield url


def test_a_database_of_the_previous_version_gains_the_key_columns_and_keeps_its_keys(old_database: str) -> None:
    store = open_database(old_database)
    try:
        columns = {c["name"] for c in inspect(store.engine).get_columns("api_keys")}
        assert {"scope", "expires_at", "requests_per_minute", "tokens_per_minute",
                "max_concurrent_requests"} <= columns
        grant = store.grant_for_key_hash(hash_key("isk-old-key"))
        assert grant is not None and grant.tenant_id == "ten-old"
        assert grant.scope is KeyScope.admin and grant.limits.unlimited() and grant.expires_at is None
        with store.engine.begin() as connection:  # a second start finds nothing to add
            assert add_missing_columns(connection, [table.__table__ for table in TABLES]) == []
        _, key = store.create_key("veteran", now=2.0, scope=KeyScope.inference)
        new = store.grant_for_key_hash(hash_key(key))
        assert new is not None and new.scope is KeyScope.inference and new.tenant_id == "ten-old"
    finally:
        store.engine.dispose()
