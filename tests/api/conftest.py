"""One control plane per test module (a `serve` subprocess on SQLite): the API tests share it, each with
its own tenant. Modules that need another store define their own `plane`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import ControlPlane


@pytest.fixture(scope="module")
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path_factory.mktemp(request.module.__name__) / "home").start()
    yield plane
    plane.stop()
