"""Shared by the sim engine's tests: the served model's name and the fixtures' types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

MODEL = "sim-model"

StartSim = Callable[..., Awaitable[str]]
