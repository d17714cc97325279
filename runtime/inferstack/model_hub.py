"""A model's size from the Hugging Face Hub (its safetensors metadata), for the models the catalogue does not
know: the I/O behind their fit check. The check itself is `hardware.fit_problem`, a pure function.

`HF_ENDPOINT` (read by `huggingface_hub`) points it at a mirror; a Hub that does not answer within
`LOOKUP_TIMEOUT_S` leaves the size unknown, and create goes on with a warning rather than waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub import HfApi

from inferstack.hardware import MODELS, ModelSize
from inferstack.spec import DeploymentSpec, Engine

LOOKUP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class SizeLookup:
    size: ModelSize | None
    unknown_because: str = ""  # why the size could not be read (when `size` is None)


def needs_lookup(spec: DeploymentSpec) -> bool:
    """Only vLLM loads weights, only GPU profiles have a memory to overflow, and the catalogue's models and
    local paths are sized without the Hub."""
    model = spec.hf_model_id
    return (spec.engine is Engine.vllm and spec.hardware_profile != "cpu" and model not in MODELS
            and not model.startswith(("/", ".", "~")))


def lookup_size(spec: DeploymentSpec, timeout_s: float = LOOKUP_TIMEOUT_S) -> SizeLookup:
    """Blocking (run it in a thread): one GET of the model's Hub record with its safetensors parameter counts."""
    token = spec.hf_token.get_secret_value() if spec.hf_token else False  # False: never a token found on disk
    try:
        info = HfApi().model_info(spec.hf_model_id, expand=["safetensors"], token=token, timeout=timeout_s)
    except Exception as exc:  # the Hub client's errors, its HTTP library's, offline mode: all mean "unknown"
        return SizeLookup(None, _short(exc))
    if info.safetensors is None or not info.safetensors.parameters:
        return SizeLookup(None, "the Hub lists no safetensors weights for it")
    return SizeLookup(ModelSize.from_parameter_counts(spec.hf_model_id, dict(info.safetensors.parameters)))


def _short(exc: Exception) -> str:
    # The first line only: the Hub client appends request ids and URLs on the lines after it.
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}"[:300]
