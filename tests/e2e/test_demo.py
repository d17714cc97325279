"""`bash .ci/demo` as the README gives it: on the sim engine it chats, scales up under a burst, pauses at
zero once idle, wakes on a request and prints the event log with the reasons, all within about a minute."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_shows_a_burst_the_pause_and_the_wake() -> None:
    began = time.monotonic()
    done = subprocess.run(["bash", ".ci/demo"], cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "COLUMNS": "200"})
    took = time.monotonic() - began
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    scaled = re.search(r"48/48 answered; scaled to (\d) replicas", out)
    assert scaled and int(scaled.group(1)) >= 2, out
    assert "paused at 0 replicas after" in out and "a request woke it: answered in" in out, out
    assert re.search(r"scaled: 0 -> 1 replicas: starting min_replicas \(1\)", out), out
    assert re.search(r"scaled: 1 -> [23] replicas: [\d.]+ req/s against a target of 2 per replica", out), out
    assert re.search(r"scaled: [23] -> 0 replicas: no requests for \d+ s \(idle timeout 8 s\)", out), out
    assert re.search(r"resumed: Waking up: .*1 request\(s\) queued at 0 replicas -> wake to 1", out), out
    assert "control plane stopped" in out
    assert took < 120, f"the demo took {took:.0f} s"  # about 40 s alone; the bound leaves room for a busy machine
