"""What the control plane keeps on disk stays private: HF tokens are encrypted in the database, and the
state directory is its owner's alone.

Tokens are sealed with Fernet (AES-128-CBC with an HMAC, from `cryptography`) under a key that is
either derived from a given secret (`INFERSTACK_TOKEN_KEY`, from a secret store, for control planes
whose home does not outlive them or that run several instances on one database) or kept in
`INFERSTACK_HOME/token.key`, created 0600 at first start. A database dump or a backup alone no longer
gives the tokens away.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "token.key"
_SEALED_PREFIX = "gAAAAA"  # every Fernet token starts with its version byte 0x80, base64 "gA", then a time


class TokenUnreadable(Exception):
    """A stored token was sealed under another key: the key file or INFERSTACK_TOKEN_KEY changed."""


class TokenCipher:
    def __init__(self, key: bytes | str) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_secret(cls, secret: str) -> TokenCipher:
        """A key derived from a high-entropy secret of any form (a secret store's random string)."""
        return cls(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))

    @classmethod
    def ephemeral(cls) -> TokenCipher:
        """A key that lives as long as the process: for stores opened without a home (tests, benchmarks)."""
        return cls(Fernet.generate_key())

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def unseal(self, stored: str) -> str:
        if not stored.startswith(_SEALED_PREFIX):
            return stored  # written before tokens were encrypted; sealed on its next write
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise TokenUnreadable("its HF token was encrypted under another key: restore the "
                                  f"{KEY_FILE} (or INFERSTACK_TOKEN_KEY) it was written with, or set the token "
                                  "again") from None


def load_or_create_key(home: Path) -> bytes:
    """The key in `home/token.key`, created (mode 0600, never overwritten) if there is none."""
    path = home / KEY_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
    return key


def make_private(home: Path) -> None:
    """`home` and everything in it readable by its owner only, now and from now on: the umask covers the
    files this process creates later (the SQLite file and its WAL, replica logs, uploads)."""
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    for path in home.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
