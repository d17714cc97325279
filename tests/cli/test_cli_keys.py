"""`inferstack keys create|list|revoke|rotate` against a running control plane."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from support import INFERSTACK, ControlPlane


def test_keys_lifecycle_from_the_command_line(control_plane: ControlPlane) -> None:
    admin = control_plane.create_key("cli-keys")
    made = subprocess.run([INFERSTACK, "keys", "create", "--tenant", "cli-keys", "--scope", "inference",
                           "--expires-in", "2h", "--rpm", "30", "--concurrency", "3"],
                          env=control_plane.env, capture_output=True, text=True, check=True)
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("isk-") and "inference key" in made.stderr

    listed = json.loads(control_plane.cli(admin, "keys", "list", "-o", "json").stdout)
    mine = next(k for k in listed if key.startswith(k["prefix"]) and k["scope"] == "inference")
    assert mine["limits"] == {"requests_per_minute": 30, "tokens_per_minute": None, "max_concurrent_requests": 3}
    assert mine["expires_at"] - time.time() == pytest.approx(7200, abs=60)
    assert key not in json.dumps(listed)

    rotated = json.loads(control_plane.cli(admin, "keys", "rotate", mine["id"], "-o", "json").stdout)
    assert rotated["replaces"] == mine["id"] and rotated["limits"] == mine["limits"]
    assert _status(control_plane, key) == 401 and _status(control_plane, rotated["key"]) == 200

    said = control_plane.cli(admin, "keys", "revoke", rotated["id"]).stdout
    assert f"Revoked {rotated['id']}" in said
    table = control_plane.cli(admin, "keys", "list").stdout
    assert rotated["id"] in table and "revoked" in table and "30 rpm" in table
    assert _status(control_plane, rotated["key"]) == 401

    over_rest = control_plane.cli(admin, "keys", "create", "--tpm", "500").stdout.strip().splitlines()[-1]
    made = next(k for k in json.loads(control_plane.cli(admin, "keys", "list", "-o", "json").stdout)
                if over_rest.startswith(k["prefix"]) and k["status"] == "active" and k["scope"] == "inference")
    assert made["limits"]["tokens_per_minute"] == 500 and _status(control_plane, over_rest) == 200

    bad = control_plane.cli(admin, "keys", "rotate", rotated["id"], "--expires-in", "soon", check=False)
    assert bad.returncode == 1 and "not a duration" in bad.stderr
    refused = control_plane.cli(admin, "keys", "revoke", "key-nosuch", check=False)
    assert refused.returncode == 1 and "No API key 'key-nosuch'" in refused.stderr and "404" in refused.stderr


def _status(plane: ControlPlane, key: str) -> int:
    return httpx.get(plane.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code
