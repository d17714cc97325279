"""The key ring's cache never honours a key past its expiry or its revocation (ManualClock, milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferstack.access import KeyLimits, KeyScope
from inferstack.auth import KeyRing
from inferstack.clock import ManualClock
from inferstack.server import open_database
from inferstack.store import Store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.engine.dispose()


async def test_an_expired_key_is_refused_at_once_although_cached(sqlite_store: Store) -> None:
    clock = ManualClock()
    ring = KeyRing(sqlite_store, clock, revalidate_s=60)
    tenant, _ = sqlite_store.create_key("acme", clock.now())
    _, key = sqlite_store.add_key(tenant, clock.now(), KeyScope.inference, clock.now() + 0.5, KeyLimits())
    header = f"Bearer {key}"
    grant = await ring.grant(header)
    assert grant is not None and grant.scope is KeyScope.inference and ring.cached(header) == grant
    clock.advance(0.499)
    assert ring.cached(header) == grant
    clock.advance(0.001)
    assert ring.cached(header) is None and await ring.grant(header) is None


async def test_a_key_revoked_here_is_refused_at_once_and_one_revoked_elsewhere_within_revalidate_s(
        sqlite_store: Store) -> None:
    clock = ManualClock()
    ring = KeyRing(sqlite_store, clock, revalidate_s=0.2)
    tenant, _ = sqlite_store.create_key("acme", clock.now())
    here, here_key = sqlite_store.add_key(tenant, clock.now(), KeyScope.admin, None, KeyLimits())
    elsewhere, elsewhere_key = sqlite_store.add_key(tenant, clock.now(), KeyScope.admin, None, KeyLimits())
    assert await ring.grant(f"Bearer {here_key}") and await ring.grant(f"Bearer {elsewhere_key}")

    sqlite_store.revoke_key(tenant, here.id, clock.now())
    ring.forget(here.id)  # what the revoke route does
    assert await ring.grant(f"Bearer {here_key}") is None

    sqlite_store.revoke_key(tenant, elsewhere.id, clock.now())  # e.g. by another control plane instance
    assert ring.cached(f"Bearer {elsewhere_key}") is not None  # the cache may lag, but only this long:
    clock.advance(0.2)
    assert await ring.grant(f"Bearer {elsewhere_key}") is None


async def test_no_key_a_bad_scheme_or_an_unknown_key_grants_nothing(sqlite_store: Store) -> None:
    ring = KeyRing(sqlite_store, ManualClock())
    _, key = sqlite_store.create_key("acme", 0.0)
    for header in (None, "", "Bearer ", f"Basic {key}", "Bearer isk-guess"):
        assert await ring.grant(header) is None
    assert await ring.grant(f"bearer {key}") is not None
