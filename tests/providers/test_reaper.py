"""The reaper and its replica: the replica dies with the reaper, however the reaper dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from inferstack.providers.reaper import PARENT_PID_ENV
from support import wait_for


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_kill_9_on_the_reaper_takes_the_replica_with_it() -> None:
    reaper = subprocess.Popen([sys.executable, "-m", "inferstack.providers.reaper", "--",
                               sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
    try:
        child = wait_for(lambda: psutil.Process(reaper.pid).children(), timeout=10, what="the replica")[0]
        reaper.send_signal(signal.SIGKILL)
        reaper.wait(5)
        wait_for(lambda: gone(child), timeout=2, what="the replica to die with its reaper")
    finally:
        reaper.kill()
        reaper.wait()
