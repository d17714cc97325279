"""Telling this control plane's replica processes from everyone else's, and stopping the ones it lost.

Every local replica process carries two environment markers, inherited by everything it starts (vLLM's
engine-core process too): the installation it belongs to (`REPLICA_OWNER_ENV`, the replica log
directory, one per INFERSTACK_HOME) and its replica id. A replica whose supervisor died (`kill -9` on
the reaper) is swept by its id; at start-up a control plane sweeps every replica of its installation
whose control plane (`reaper.PARENT_PID_ENV`) is gone. Processes of other users or installations are
never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os

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


def _kill(processes: list[psutil.Process]) -> int:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=5)
    return len(processes)


def sweep_replica(owner: str, replica_id: str) -> int:
    """Kill whatever is left of one replica (its supervisor is gone). Returns how many processes went."""
    return _kill([p for p, env in _marked(owner) if env.get(REPLICA_ID_ENV) == replica_id])


def reclaim(owner: str) -> int:
    """At start-up: kill the replicas of `owner` whose control plane is no longer running."""
    me = os.getpid()
    lost = [p for p, env in _marked(owner) if not _control_plane_alive(env.get(PARENT_PID_ENV), p, me)]
    if lost:
        log.warning("stopping %d replica processes a previous control plane left running", len(lost))
    return _kill(lost)


def _control_plane_alive(pid_text: str | None, replica: psutil.Process, me: int) -> bool:
    if not pid_text or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == me:
        return True
    try:
        # A pid reused since: the process there started after the replica it would have started.
        return psutil.Process(pid).create_time() <= replica.create_time()
    except psutil.Error:
        return False
