"""A local AWS emulator for the provider suites: moto in server mode, spoken to over HTTP by boto3."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from support import free_port, wait_for


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    with (tmp_path_factory.mktemp("moto") / "moto.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=30, what="the moto AWS server")
            yield url
        finally:
            server.terminate()
            server.wait(10)


@pytest.fixture
def moto_reset(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A blank account (the server is shared by the session) and test credentials for boto3."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint
