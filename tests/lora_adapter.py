"""Build a tiny LoRA adapter for the tiny test Llama (runtime/inferstack/engines/tiny_llama.py), in the
format vLLM reads: `adapter_config.json` (PEFT's) and `adapter_model.safetensors` with
`base_model.model.model.layers.{i}.self_attn.{q,v}_proj.lora_{A,B}.weight` ([r, hidden] and [out, r]).

The weights are random but large enough that greedy decoding takes another path than the base model.
`python lora_adapter.py OUT_DIR [RANK] [SEED]` runs under the vLLM environment (torch, safetensors);
`write_config` alone is enough for the sim engine, which reads only the config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HIDDEN = 128  # the tiny Llama: hidden 128, 2 heads of 64 (q and v project 128 -> 128), 2 layers
LAYERS = 2
MODULES = ("q_proj", "v_proj")


def write_config(out_dir: Path, rank: int = 8) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "target_modules": list(MODULES), "bias": "none", "base_model_name_or_path": None,
        "fan_in_fan_out": False, "modules_to_save": None}))
    return out_dir


def write_adapter(out_dir: Path, rank: int = 8, seed: int = 1) -> Path:
    import torch
    from safetensors.torch import save_file

    write_config(out_dir, rank)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module in MODULES:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, HIDDEN, generator=generator) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(HIDDEN, rank, generator=generator) * 0.5
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    return out_dir


if __name__ == "__main__":
    write_adapter(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:4]))
