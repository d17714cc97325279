"""What the sim engine is told: the vLLM flags it imitates plus the timing model, validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

Task = Literal["generate", "embed"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the sim engine is told; mirrors the vLLM flags it imitates plus the timing model."""

    served_model_names: tuple[str, ...]
    host: str = "0.0.0.0"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)  # a secret: kept out of repr and logs
    ttft_ms: float = 50.0
    tokens_per_s: float = 50.0
    max_concurrency: int = 16
    task: Task = "generate"
    startup_delay_s: float = 0.0
    max_model_len: int = 4096
    enable_lora: bool = False
    max_loras: int = 1
    max_lora_rank: int = 16
    lora_modules: tuple[str, ...] = ()
    runtime_lora_updating: bool = False
    """VLLM_ALLOW_RUNTIME_LORA_UPDATING: whether the load and unload routes exist."""

    def __post_init__(self) -> None:
        names = self.served_model_names
        if isinstance(names, str):
            names = (names,)
        # A list is accepted for convenience; frozen, so it is stored as a tuple.
        object.__setattr__(self, "served_model_names", tuple(names))
        if not self.served_model_names or not all(isinstance(n, str) and n for n in self.served_model_names):
            raise ValueError("served_model_names must hold at least one non-empty name")
        if self.task not in get_args(Task):
            raise ValueError(f"task must be one of {get_args(Task)}, got {self.task!r}")
        for name in ("ttft_ms", "tokens_per_s", "startup_delay_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.api_key == "":
            raise ValueError("api_key must not be empty (leave it unset to disable auth)")
