"""The sim engine's LoRA adapters, as vLLM keeps them: `--enable-lora`, `--lora-modules name=path` at start,
and at run time (with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) `POST /v1/load_lora_adapter` and
`/v1/unload_lora_adapter`, with vLLM's answers: a plain-text success, its errors and their statuses.

An adapter given as an absolute path must be a directory holding `adapter_config.json` (vLLM reads it and
refuses a rank above `--max-lora-rank`); a Hugging Face repo id is taken as given (the sim downloads
nothing). A request to an adapter answers other words than the base model does, as a fine-tune would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferstack.engines.sim.errors import SimApiError


@dataclass(slots=True)
class LoraAdapters:
    enabled: bool = False
    max_loras: int = 1
    max_lora_rank: int = 16
    runtime_updates: bool = False
    paths: dict[str, str] = field(default_factory=dict)
    """Adapter name -> the path or repo id it was loaded from (vLLM's `root` in /v1/models)."""

    def start_with(self, modules: list[str]) -> None:
        """`--lora-modules name=path ...`; a bad one stops the server, as it stops vLLM."""
        for module in modules:
            name, separator, path = module.partition("=")
            if not separator or not name or not path:
                raise ValueError(f"--lora-modules takes name=path, got {module!r}")
            self.paths[name] = self._checked(name, path)

    def load(self, body: dict[str, Any], base_names: tuple[str, ...]) -> str:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            raise SimApiError(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in base_names:
            raise SimApiError(400, f"The lora adapter '{name}' conflicts with a served base model.",
                              "InvalidUserInput")
        if name in self.paths and not body.get("load_inplace"):
            raise SimApiError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                              "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        try:
            self.paths[name] = self._checked(name, path)
        except FileNotFoundError as exc:
            raise SimApiError(404, str(exc), "NotFoundError") from None
        except ValueError as exc:  # vLLM answers any other failure of the engine's add_lora with a 500
            raise SimApiError(500, str(exc), "InternalServerError") from None
        return f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, body: dict[str, Any]) -> str:
        name = body.get("lora_name")
        if not name:
            raise SimApiError(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if name not in self.paths:
            raise SimApiError(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.paths[name]
        return f"Success: LoRA adapter '{name}' removed successfully."

    def _checked(self, name: str, path: str) -> str:
        if not self.enabled:
            raise ValueError("LoRA is not enabled. Please start the server with --enable-lora.")
        if not path.startswith("/"):
            return path  # a Hugging Face repo id: vLLM downloads it; the sim takes it as it is
        config = Path(path) / "adapter_config.json"
        if not config.is_file():
            # vLLM 0.32 writes `<path>` here, not the path.
            raise FileNotFoundError(f"Loading lora {name} failed: No adapter found for <path>")
        rank = json.loads(config.read_text()).get("r", 0)
        if rank > self.max_lora_rank:
            raise ValueError(f"Call to add_lora method failed: LoRA rank {rank} is greater than max_lora_rank "
                             f"{self.max_lora_rank}.")
        return path
