"""The local target's control-plane resource: starts `inferstack serve`, notices it, stops it by pid."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from local_process import LocalProcessProvider
from support import free_port


def props(home: Path, port: int, **extra: object) -> dict[str, object]:
    return {"command": ["inferstack", "serve"], "host": "127.0.0.1", "port": port, "home": str(home),
            "tenant": "platform", "startup_timeout_s": 60, "api_key_digest": "abc", **extra}


def test_create_read_delete_a_local_control_plane(tmp_path: Path) -> None:
    provider = LocalProcessProvider(api_key="isk-local-test-key")
    port = free_port()
    created = provider.create(props(tmp_path / "home", port))
    pid = int(created.id)
    try:
        assert created.outs["url"] == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{created.outs['url']}/health", timeout=5).status_code == 200
        assert (tmp_path / "home" / "serve.log").exists()
        assert provider.read(created.id, created.outs).id == created.id
        assert "isk-local-test-key" not in repr(created.outs)
        assert provider.diff(created.id, created.outs, props(tmp_path / "home", port)).changes is False
        assert provider.diff(created.id, created.outs, props(tmp_path / "home", port + 1)).replaces == ["port"]
        with pytest.raises(RuntimeError, match="already answers"):
            provider.create(props(tmp_path / "other", port))
    finally:
        provider.delete(created.id, created.outs)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert provider.read(created.id, created.outs).id is None, "a stopped process is gone on refresh"


def test_the_stack_api_key_is_accepted_by_the_started_control_plane(tmp_path: Path) -> None:
    provider = LocalProcessProvider(api_key="isk-local-bootstrap-key-0123456789")
    created = provider.create(props(tmp_path / "home", free_port()))
    try:
        response = httpx.get(f"{created.outs['url']}/v1/deployments",
                             headers={"Authorization": "Bearer isk-local-bootstrap-key-0123456789"}, timeout=5)
        assert response.status_code == 200
    finally:
        provider.delete(created.id, created.outs)
