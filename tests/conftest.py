from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import ControlPlane


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path / "home").start()
    try:
        yield plane
    finally:
        plane.stop()


def vllm_python() -> str | None:
    """The vLLM CPU environment's interpreter (built by .ci/setup-vllm), if this machine has one."""
    path = os.environ.get("INFERSTACK_VLLM_PYTHON")
    return path if path and Path(path).exists() else None
