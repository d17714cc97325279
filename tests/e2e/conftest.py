"""`inferstack serve` on each store it supports: the embedded SQLite file and PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from support import ControlPlane, postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def plane_on_each_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane on SQLite, then on a fresh PostgreSQL schema (the same test runs on both)."""
    with ExitStack() as stack:
        env = {} if request.param == "sqlite" else {"INFERSTACK_DATABASE_URL": stack.enter_context(postgres_schema())}
        plane = ControlPlane(home=tmp_path / "home", env_extra=env).start()
        stack.callback(plane.stop)
        yield plane
