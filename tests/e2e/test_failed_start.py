"""A deployment whose engine cannot start, against `inferstack serve`: the cause reaches every caller."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

from support import INFERSTACK, ControlPlane

CAUSE = "engine 'vllm' needs a Python environment with vLLM"


def test_create_wait_exits_non_zero_with_the_cause_and_chat_gets_it_too(tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_VLLM_PYTHON": ""}).start()  # no vLLM here
    try:
        key = plane.create_key("team")
        done = subprocess.run([INFERSTACK, "create", "org/model", "--name", "novllm", "-g", "cpu", "--engine", "vllm",
                               "-w"], env={**plane.env, "INFERSTACK_API_KEY": key}, capture_output=True, text=True,
                              timeout=60)
        said = " ".join(done.stderr.split())
        assert done.returncode == 1, said
        assert "is failed" in said and CAUSE in said

        rest = plane.client(key)
        info = rest.get("/v1/deployments/novllm").json()
        assert info["status"] == "failed" and CAUSE in info["status_reason"]
        chat = rest.post("/v1/chat/completions",
                         json={"model": "novllm", "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 503 and CAUSE in chat.json()["error"]["message"]
        events = rest.get(f"/v1/deployments/{info['id']}/events").json()["data"]
        tries = [e["at"] for e in events if e["kind"] == "start_failed"]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        assert tries and all(gap >= 1.9 for gap in gaps) and gaps == sorted(gaps), gaps  # 2 s, 4 s, ... apart
    finally:
        plane.stop()
