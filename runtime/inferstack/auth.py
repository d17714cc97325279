"""Bearer-key authentication, cached so the gateway's hot path never waits on the database."""

from __future__ import annotations

import asyncio

from inferstack.store import Store, hash_key


class KeyRing:
    """Maps a presented API key to its tenant. Keys are stored hashed; hits are cached in memory."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tenants: dict[str, str] = {}

    def cached(self, authorization: str | None) -> str | None:
        """The tenant for a key seen before, without I/O (the hot path's first try)."""
        key = bearer_key(authorization)
        return self._tenants.get(hash_key(key)) if key else None

    async def tenant(self, authorization: str | None) -> str | None:
        key = bearer_key(authorization)
        if not key:
            return None
        digest = hash_key(key)
        tenant = self._tenants.get(digest)
        if tenant is None:
            tenant = await asyncio.to_thread(self._store.tenant_for_key_hash, digest)
            if tenant is not None:
                self._tenants[digest] = tenant
        return tenant


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None
