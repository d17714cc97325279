"""The database password, read from where it lives each time it may have changed.

RDS rotates a managed master password every 7 days; a password read once at start-up (an environment
variable injected when the task started) stops working at the next rotation, and the control plane
then cannot open a new connection. So the password is a source, not a value: `RotatingPassword`
asks its source on the first connection and again whenever the database refuses the one it holds.
Connections already open keep working through a rotation (PostgreSQL checks a password only when a
connection opens).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

PasswordSource = Callable[[], str]
"""Returns the current password (e.g. from Secrets Manager)."""


def is_authentication_failure(error: BaseException) -> bool:
    """PostgreSQL's refusal of a password (SQLSTATE 28P01) or of a login (28000)."""
    return getattr(error, "sqlstate", None) in {"28P01", "28000"} or "password authentication failed" in str(error)


class RotatingPassword:
    """The password for new connections: cached, and read again from its source when refused."""

    def __init__(self, source: PasswordSource) -> None:
        self._source = source
        self._current: str | None = None
        self._lock = threading.Lock()
        self.reads = 0

    def current(self) -> str:
        with self._lock:
            if self._current is None:
                self._read()
            assert self._current is not None
            return self._current

    def refresh(self, refused: str) -> str:
        """Read the source again unless another connection already did since `refused` failed."""
        with self._lock:
            if self._current == refused:
                self._read()
            assert self._current is not None
            return self._current

    def connect(self, connect: Callable[..., Any], cparams: dict[str, Any]) -> Any:
        """Open a connection with the current password; once refused, with a freshly read one."""
        password = self.current()
        try:
            return connect(**{**cparams, "password": password})
        except Exception as exc:
            if not is_authentication_failure(exc):
                raise
        return connect(**{**cparams, "password": self.refresh(password)})

    def _read(self) -> None:
        self._current = self._source()
        self.reads += 1


def secrets_manager_password(secret_id: str, region: str | None, endpoint_url: str | None = None) -> PasswordSource:
    """The `password` of an RDS-managed secret (JSON {"username", "password"}), read at each call."""
    import boto3

    client = boto3.session.Session(region_name=region).client("secretsmanager", endpoint_url=endpoint_url)

    def read() -> str:
        value = client.get_secret_value(SecretId=secret_id)["SecretString"]
        return str(json.loads(value)["password"])

    return read
