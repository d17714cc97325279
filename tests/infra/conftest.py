"""Fixtures: each stack file's program, built once per session under Pulumi mocks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "infra"))

from program_harness import Program, run_program  # noqa: E402


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Program]]:
    cache: dict[tuple[str, ...], Program] = {}

    def get(stack_file: str, *options: str) -> Program:
        key = (stack_file, *options)
        if key not in cache:
            cache[key] = run_program(stack_file, *options, tmp=tmp_path_factory.mktemp("program"))
        return cache[key]

    yield get


@pytest.fixture(scope="session")
def local(program: Callable[..., Program]) -> Program:
    result = program("stacks/Pulumi.local.yaml")
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="session")
def dev(program: Callable[..., Program]) -> Program:
    result = program("stacks/Pulumi.dev.yaml")
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="session")
def prod(program: Callable[..., Program]) -> Program:
    result = program("stacks/Pulumi.prod.yaml")
    assert result.error is None, result.error
    return result
