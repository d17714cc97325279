"""Every shell command in the README runs as written, against a local `inferstack serve`.

What counts as a command: each fenced block marked `bash`, `sh` or `shell`, run as one script in README
order (so a later block may use what an earlier one created). `text` blocks are usage synopses and
route lists, and `python` blocks are not run here. A block holding a line `# needs: <what>` needs
something no test machine has (a GPU, a cloud account) or is this suite itself, and is skipped.

The test plays the user who followed the README so far: a control plane runs (sim engine, SQLite, a
temporary home), `INFERSTACK_API_KEY` holds an admin key, and the working directory looks like a fresh
clone (links to the repository's top level; files a command writes stay out of the repository). Only
the port differs: `localhost:8000` becomes the test control plane's port, as other suites may hold 8000.

A `# -> ...` comment shows what the commands before it answer: each `"key": value` pair in it must appear
in the block's output (whitespace aside; `...` inside a value stands for anything).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from support import INFERSTACK, ROOT, ControlPlane

SHELL_FENCES = {"bash", "sh", "shell"}
NEEDS = re.compile(r"#\s*needs:", re.IGNORECASE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAIR = re.compile(r'"(\w+)":\s*("(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?)')


def readme_blocks() -> list[tuple[str, str]]:
    """(fence language, text) of every fenced block in the README, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def runnable(blocks: list[tuple[str, str]]) -> list[str]:
    return [text for language, text in blocks if language in SHELL_FENCES and not NEEDS.search(text)]


def promised(block: str) -> list[re.Pattern[str]]:
    """What the block's `# -> ` lines say its output holds, as patterns over whitespace-free output."""
    patterns = []
    for line in block.splitlines():
        for key, value in PAIR.findall(line.partition("# ->")[2]):
            literal = re.sub(r"\s", "", f'"{key}":{value}')
            patterns.append(re.compile('[^"]*'.join(re.escape(part) for part in literal.split("..."))))
    return patterns


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that looks like a fresh clone: the repository's top level, linked."""
    where = tmp_path_factory.mktemp("clone")
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (where / entry.name).symlink_to(entry)
    return where


def test_the_readme_marks_what_it_cannot_run_here() -> None:
    blocks = readme_blocks()
    shell = [text for language, text in blocks if language in SHELL_FENCES]
    skipped = [text for text in shell if NEEDS.search(text)]
    assert any("bash .ci/test" in text for text in skipped)  # the suite itself
    assert any("--wait" in text and "HF_TOKEN" in text for text in skipped)  # a real model on a GPU
    # What must run here: the demo, the REST and compatibility examples, and the batch commands.
    for command in ("bash .ci/demo", "/v1/deployments", "/sg_inf/create", "batch create"):
        assert any(command in text for text in runnable(blocks)), command


def test_every_readme_command_runs_as_written(plane: ControlPlane, clone: Path) -> None:
    key = plane.create_key("readme")
    env = {**plane.env, "INFERSTACK_API_KEY": key,
           "PATH": f"{Path(INFERSTACK).parent}{os.pathsep}{os.environ['PATH']}"}
    for block in runnable(readme_blocks()):
        script = block.replace("localhost:8000", f"127.0.0.1:{plane.port}").replace(
            "127.0.0.1:8000", f"127.0.0.1:{plane.port}")
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        output = re.sub(r"\s", "", done.stdout)
        for pattern in promised(block):
            assert pattern.search(output), f"{block}\nshould answer {pattern.pattern}; it printed:\n{done.stdout}"
    assert not (ROOT / "requests.jsonl").exists()  # what the commands wrote stayed out of the repository
