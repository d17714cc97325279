from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inferstack.store import Store
from support import ControlPlane, postgres_schema


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path / "home").start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on SQLite and on the real PostgreSQL server (each test runs on both)."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
               else stack.enter_context(postgres_schema()))
        store = Store(url)
        store.create_schema()
        yield store
        store.engine.dispose()
