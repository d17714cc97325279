"""Process-wide settings, read from the environment once at the edge (CLI or server start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


def _home() -> Path:
    return Path(os.environ.get("INFERSTACK_HOME", Path.home() / ".inferstack")).expanduser()


class Settings(BaseModel):
    # The defaults come from the environment: a bad INFERSTACK_* value must fail at start-up, not later.
    model_config = ConfigDict(validate_default=True)

    home: Path = Field(default_factory=_home)
    database_url: str | None = Field(default_factory=lambda: os.environ.get("INFERSTACK_DATABASE_URL"))
    files_url: str | None = Field(
        default_factory=lambda: os.environ.get("INFERSTACK_FILES_URL"),
        description="Where uploads and batch results live: a directory (default) or s3://bucket/prefix.",
    )
    provider: Literal["local", "aws"] = Field(
        default_factory=lambda: os.environ.get("INFERSTACK_PROVIDER", "local"),  # type: ignore[arg-type]
        description="Where replicas run: local processes, or EC2 instances in Auto Scaling groups.",
    )
    controller_tick_s: float = Field(
        default_factory=lambda: float(os.environ.get("INFERSTACK_CONTROLLER_TICK_S", "1.0")), gt=0
    )
    heartbeat_s: float = Field(
        default_factory=lambda: float(os.environ.get("INFERSTACK_HEARTBEAT_S", "5.0")), gt=0,
        description="How often a held streaming request gets an SSE comment while its deployment wakes.",
    )
    bootstrap_api_key: str | None = Field(
        default_factory=lambda: os.environ.get("INFERSTACK_BOOTSTRAP_API_KEY") or None,
        description="A key registered at start-up (from a deployment tool's secret) if the store lacks it.",
        repr=False,
    )
    bootstrap_tenant: str = Field(default_factory=lambda: os.environ.get("INFERSTACK_BOOTSTRAP_TENANT", "platform"))
    vllm_python: str | None = Field(
        default_factory=lambda: os.environ.get("INFERSTACK_VLLM_PYTHON"),
        description="The Python interpreter of the environment that has vLLM installed.",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'inferstack.db'}"

    @property
    def replica_log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"


class ClientSettings(BaseModel):
    """What a client of the control plane (the CLI, `inferstack apply`, the Pulumi provider) reads."""

    model_config = ConfigDict(validate_default=True)

    url: str = Field(default_factory=lambda: os.environ.get("INFERSTACK_URL", "http://127.0.0.1:8000").rstrip("/"))
    api_key: str | None = Field(default_factory=lambda: os.environ.get("INFERSTACK_API_KEY") or None, repr=False)
