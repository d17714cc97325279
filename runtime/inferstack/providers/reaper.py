"""A replica's supervisor process: it dies with the control plane, and takes the whole replica with it.

`python -m inferstack.providers.reaper [--group-file PATH] -- CMD ...` runs CMD in its own process group
(whose id it writes to PATH, with the control plane's pid, for `providers/orphans.py`). The kernel
sends the reaper SIGTERM when its parent (the control plane) dies for any reason, SIGKILL included
(PR_SET_PDEATHSIG), and the reaper then kills the group: vLLM's API server forks an engine-core
process that would otherwise outlive a killed control plane and hold the GPU. CMD in turn gets
SIGKILL when the reaper dies (the same mechanism, armed in CMD's process before it execs), so a
`kill -9` on the reaper does not leave the engine serving; what CMD started (vLLM's engine core, which
outlives its parent) is swept by the control plane, by its process group (`providers/orphans.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0
PARENT_PID_ENV = "INFERSTACK_PARENT_PID"
"""The control plane's pid, which the starting side (`providers/local.py`) sets: the reaper checks it is
still its parent once the death signal is armed."""


def _die_with_parent(expected_parent: int, sig: int = signal.SIGTERM) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os._exit(1)  # also right in a forked child, where sys.exit would unwind the parent's stack


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m inferstack.providers.reaper",
                                     usage="%(prog)s [--group-file PATH] -- CMD [ARGS...]")
    parser.add_argument("--group-file", type=Path, help="where to write CMD's process group and our parent's pid")
    options, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not command:
        parser.error("no command after --")  # exits 2
    control_plane = int(os.environ.get(PARENT_PID_ENV, os.getppid()))
    _die_with_parent(control_plane)
    reaper = os.getpid()
    # Runs in the child between fork and exec; the reaper has no threads, so this is safe here.
    child = subprocess.Popen(command, start_new_session=True,
                             preexec_fn=lambda: _die_with_parent(reaper, signal.SIGKILL))
    if options.group_file is not None:
        options.group_file.write_text(f"{child.pid} {control_plane}\n")
    kill_at: list[float] = []  # set once a stop is asked for: when SIGTERM turns into SIGKILL

    def on_signal(_signum: int, _frame: object) -> None:
        # Only signal here: waiting inside a handler would race the main loop's wait() for the child.
        _signal_group(child.pid, signal.SIGTERM)
        kill_at.append(time.monotonic() + GRACE_S)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        try:
            code = child.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            if kill_at and time.monotonic() > kill_at[0]:
                _signal_group(child.pid, signal.SIGKILL)
    _signal_group(child.pid, signal.SIGKILL)  # the leader is gone: leave none of its children behind
    return 0 if kill_at else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
