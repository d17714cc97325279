"""Telling this control plane's replica processes from everyone else's, and stopping the ones it lost.

Every local replica process carries two environment markers, inherited by everything it starts (vLLM's
engine-core process too): the installation it belongs to (`REPLICA_OWNER_ENV`, the replica log
directory, one per INFERSTACK_HOME) and its replica id. A replica whose supervisor died (`kill -9` on
the reaper) is swept by its id; at start-up a control plane sweeps every replica of its installation
whose control plane (`reaper.PARENT_PID_ENV`) is gone. Processes of other users or installations are
never touched.

Markers alone miss a process that rewrites its title: that overwrites the memory /proc shows as its
environment. vLLM's engine core does, and it outlives its API server. So each replica's process group is
also written down (`group_file`, by the reaper) and swept with it; a group id the system has since given
to a newer process is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import psutil

from inferstack.providers.reaper import PARENT_PID_ENV

log = logging.getLogger("inferstack.providers")

REPLICA_OWNER_ENV = "INFERSTACK_REPLICA_OWNER"
REPLICA_ID_ENV = "INFERSTACK_REPLICA_ID"


def markers(owner: str, replica_id: str) -> dict[str, str]:
    return {REPLICA_OWNER_ENV: owner, REPLICA_ID_ENV: replica_id, PARENT_PID_ENV: str(os.getpid())}


def _marked(owner: str) -> list[tuple[psutil.Process, dict[str, str]]]:
    found = []
    for process in psutil.process_iter():
        try:
            environ = process.environ()
        except (psutil.Error, OSError):  # another user's, or gone meanwhile
            continue
        if environ.get(REPLICA_OWNER_ENV) == owner:
            found.append((process, environ))
    return found


def group_file(owner: str, replica_id: str) -> Path:
    """Where the reaper of `replica_id` writes its replica's process group and its control plane's pid."""
    return Path(owner) / f"{replica_id}.group"


def _read_group(path: Path) -> tuple[int, str, float] | None:
    """A group file's process group, control plane pid (as written) and when it was written; None if unreadable."""
    try:
        pgid, control_plane = path.read_text().split()
        return int(pgid), control_plane, path.stat().st_mtime
    except (OSError, ValueError):
        return None


def _group_members(pgid: int, written: float) -> list[psutil.Process]:
    """The processes still in process group `pgid` (none if its id now belongs to a process started after
    the group file was `written`: the id was reused)."""
    try:
        if psutil.Process(pgid).create_time() > written + 1.0:  # 1 s: the two clocks' rounding
            return []
    except psutil.Error:
        pass  # the group's leader is gone: its id stays the group's while any member lives
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def _kill(processes: list[psutil.Process]) -> int:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=5)
    return len(processes)


def sweep_replica(owner: str, replica_id: str) -> int:
    """Kill whatever is left of one replica (its supervisor is gone). Returns how many processes went."""
    path = group_file(owner, replica_id)
    found = {p.pid: p for p, env in _marked(owner) if env.get(REPLICA_ID_ENV) == replica_id}
    group = _read_group(path)
    if group is not None:
        found.update((p.pid, p) for p in _group_members(group[0], group[2]))
    path.unlink(missing_ok=True)
    return _kill(list(found.values()))


def reclaim(owner: str) -> int:
    """At start-up: kill the replicas of `owner` whose control plane is no longer running."""
    me = os.getpid()
    lost = {p.pid: p for p, env in _marked(owner) if not _control_plane_alive(env.get(PARENT_PID_ENV), _started(p), me)}
    for path in Path(owner).glob("*.group"):
        group = _read_group(path)
        if group is not None and not _control_plane_alive(group[1], group[2], me):
            lost.update((p.pid, p) for p in _group_members(group[0], group[2]))
            path.unlink(missing_ok=True)
    if lost:
        log.warning("stopping %d replica processes a previous control plane left running", len(lost))
    return _kill(list(lost.values()))


def _started(process: psutil.Process) -> float:
    try:
        return process.create_time()
    except psutil.Error:
        return 0.0


def _control_plane_alive(pid_text: str | None, replica_started: float, me: int) -> bool:
    if not pid_text or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == me:
        return True
    try:
        # A pid reused since: the process there started after the replica it would have started.
        return psutil.Process(pid).create_time() <= replica_started
    except psutil.Error:
        return False
