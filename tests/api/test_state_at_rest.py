"""What a control plane leaves on disk, read from outside it: its home is its owner's alone, and the HF
token in the SQLite file is ciphertext that the control plane itself still opens after a restart."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import psutil

from support import ControlPlane, children_of, sim_deployment, wait_for


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def replica_environments(plane: ControlPlane) -> list[str]:
    assert plane.process is not None
    found = []
    for pid in children_of(plane.process.pid):
        try:
            found.append(" ".join(f"{k}={v}" for k, v in psutil.Process(pid).environ().items()))
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_home_is_private_and_the_token_is_sealed_yet_reaches_the_replica(control_plane: ControlPlane) -> None:
    key = control_plane.create_key("team")
    sim_deployment(control_plane, key, "gated", hf_token="hf_sealed_secret")
    home = control_plane.home
    assert mode(home) == 0o700
    for name in ("inferstack.db", "inferstack.db-wal", "token.key", "serve.log"):
        assert mode(home / name) == 0o600, name
    logs = list((home / "logs").iterdir())
    assert logs and mode(home / "logs") == 0o700 and all(mode(log) == 0o600 for log in logs)
    with sqlite3.connect(home / "inferstack.db") as connection:
        (sealed,) = connection.execute("select hf_token from deployments").fetchone()
    assert sealed.startswith("gAAAAA") and "hf_sealed_secret" not in sealed
    assert b"hf_sealed_secret" not in (home / "inferstack.db").read_bytes()
    assert b"hf_sealed_secret" not in (home / "inferstack.db-wal").read_bytes()

    control_plane.stop()
    control_plane.start()
    rest = control_plane.client(key)
    wait_for(lambda: rest.get("/v1/deployments/gated").json()["status"] == "running", timeout=30)
    assert any("HF_TOKEN=hf_sealed_secret" in env for env in replica_environments(control_plane))
