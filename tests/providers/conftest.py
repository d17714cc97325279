"""A blank AWS account per test on the session's moto server (see tests/conftest.py)."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def moto_reset(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A blank account (the server is shared by the session) and test credentials for boto3."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint
