"""Bearer-key authentication, cached so the gateway's hot path rarely waits on the database.

A cached key is honoured only while it is unexpired (checked against the clock on every use) and for at
most `revalidate_s` since it was read: a key revoked through this control plane is forgotten at once
(`forget`), one revoked elsewhere (another instance on the same PostgreSQL, the CLI on the store) within
`revalidate_s`.
"""

from __future__ import annotations

import asyncio

from inferstack.access import KeyGrant
from inferstack.clock import Clock
from inferstack.store import Store, hash_key

REVALIDATE_S = 5.0


class KeyRing:
    """Maps a presented API key to what it grants. Keys are stored hashed; grants are cached in memory."""

    def __init__(self, store: Store, clock: Clock, revalidate_s: float = REVALIDATE_S) -> None:
        self._store = store
        self._clock = clock
        self._revalidate_s = revalidate_s
        self._grants: dict[str, tuple[KeyGrant, float]] = {}  # key hash -> (grant, when it was read)

    def cached(self, authorization: str | None) -> KeyGrant | None:
        """The grant of a key seen lately and still valid, without I/O (the hot path's first try)."""
        key = bearer_key(authorization)
        entry = self._grants.get(hash_key(key)) if key else None
        if entry is None:
            return None
        grant, read_at = entry
        now = self._clock.now()
        return grant if now - read_at < self._revalidate_s and not grant.expired(now) else None

    async def grant(self, authorization: str | None) -> KeyGrant | None:
        """The grant of a valid key (cached, else read from the store), or None."""
        grant = self.cached(authorization)
        key = bearer_key(authorization)
        if grant is not None or not key:
            return grant
        digest = hash_key(key)
        grant = await asyncio.to_thread(self._store.grant_for_key_hash, digest)
        now = self._clock.now()
        if grant is None or grant.expired(now):
            self._grants.pop(digest, None)
            return None
        self._grants[digest] = (grant, now)
        return grant

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (it was just revoked or rotated here)."""
        self._grants = {digest: entry for digest, entry in self._grants.items() if entry[0].key_id != key_id}


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None
