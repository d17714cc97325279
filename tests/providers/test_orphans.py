"""Replica processes marked as this installation's are found and stopped; anyone else's are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from inferstack.providers import orphans
from inferstack.providers.reaper import PARENT_PID_ENV


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def sleeper(started: list[subprocess.Popen[bytes]], **env: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={"PATH": os.environ.get("PATH", ""), **env})
    started.append(process)
    return process


def alive(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def test_at_start_the_replicas_a_dead_control_plane_left_are_stopped_and_no_others(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    mine, other_home = str(tmp_path / "home" / "logs"), str(tmp_path / "elsewhere" / "logs")
    dead = str(dead_pid())
    orphan = sleeper(sleepers, **{orphans.REPLICA_OWNER_ENV: mine, orphans.REPLICA_ID_ENV: "rep-1",
                                  PARENT_PID_ENV: dead})
    owned_by_a_live_control_plane = sleeper(sleepers, **{orphans.REPLICA_OWNER_ENV: mine,
                                                         orphans.REPLICA_ID_ENV: "rep-2",
                                                         PARENT_PID_ENV: str(os.getpid())})
    another_installations = sleeper(sleepers, **{orphans.REPLICA_OWNER_ENV: other_home,
                                                 orphans.REPLICA_ID_ENV: "rep-3", PARENT_PID_ENV: dead})
    unmarked = sleeper(sleepers)

    assert orphans.reclaim(mine) == 1
    orphan.wait(5)
    assert not alive(orphan)
    assert alive(owned_by_a_live_control_plane) and alive(another_installations) and alive(unmarked)


def test_what_is_left_of_one_replica_is_swept_by_its_id(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    owner = str(tmp_path)
    left = [sleeper(sleepers, **orphans.markers(owner, "rep-1")) for _ in range(2)]
    other = sleeper(sleepers, **orphans.markers(owner, "rep-2"))
    assert orphans.sweep_replica(owner, "rep-1") == 2
    assert [p.wait(5) for p in left] and alive(other)
    assert psutil.pid_exists(other.pid)
