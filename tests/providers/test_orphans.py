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
from support import wait_for


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


def sleeper(started: list[subprocess.Popen[bytes]], group_leader: bool = False, **env: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={"PATH": os.environ.get("PATH", ""), **env}, start_new_session=group_leader)
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


# An engine that starts a process whose environment cannot be read for markers (vLLM's engine core
# rewrites its title over it), then sleeps; it writes that process's pid for the test.
ENGINE_WITH_A_CORE = """
import subprocess, sys, time
core = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={})
open(sys.argv[1], "w").write(str(core.pid))
time.sleep(60)
"""


def test_a_killed_reapers_replica_is_swept_by_its_process_group_markers_or_not(tmp_path: Path) -> None:
    owner, core_pid_file = str(tmp_path), tmp_path / "core.pid"
    reaper = subprocess.Popen(
        [sys.executable, "-m", "inferstack.providers.reaper", "--group-file", str(orphans.group_file(owner, "rep-1")),
         "--", sys.executable, "-c", ENGINE_WITH_A_CORE, str(core_pid_file)],
        env={**os.environ, **orphans.markers(owner, "rep-1")})
    try:
        core = psutil.Process(wait_for(lambda: core_pid_file.exists() and int(core_pid_file.read_text() or 0),
                                       timeout=10, what="the engine's core process"))
        engine = core.parent()
        assert engine is not None
        reaper.kill()  # the engine dies with it (SIGKILL at its parent's death); its core is left behind
        reaper.wait()
        wait_for(lambda: not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE, timeout=5,
                 what="the engine to die with its reaper")
        assert core.is_running() and orphans.REPLICA_ID_ENV not in core.environ()

        assert orphans.sweep_replica(owner, "rep-1") >= 1
        core.wait(5)
        assert not core.is_running() and not orphans.group_file(owner, "rep-1").exists()
    finally:
        reaper.kill()
        reaper.wait()


def test_a_process_group_id_given_to_a_newer_process_is_not_swept(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    newer = sleeper(sleepers, group_leader=True)  # it leads a group of its own pid
    path = orphans.group_file(str(tmp_path), "rep-1")
    path.write_text(f"{newer.pid} {dead_pid()}\n")
    an_hour_ago = path.stat().st_mtime - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))  # the file is older than the process its id names
    assert orphans.sweep_replica(str(tmp_path), "rep-1") == 0 and orphans.reclaim(str(tmp_path)) == 0
    assert alive(newer)


def test_at_start_a_dead_control_planes_replica_groups_are_stopped_and_a_live_ones_are_not(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    left, running = sleeper(sleepers, group_leader=True), sleeper(sleepers, group_leader=True)
    for process, control_plane, replica in ((left, dead_pid(), "rep-1"), (running, os.getpid(), "rep-2")):
        orphans.group_file(str(tmp_path), replica).write_text(f"{process.pid} {control_plane}\n")
    assert orphans.reclaim(str(tmp_path)) == 1
    left.wait(5)
    assert not alive(left) and alive(running)
    assert [orphans.group_file(str(tmp_path), r).exists() for r in ("rep-1", "rep-2")] == [False, True]
