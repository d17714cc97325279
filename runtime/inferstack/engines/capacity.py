"""How many sequences one replica runs at once: the engine's own limit, read from the spec.

The gateway admits at most this many requests per replica (the rest wait in its FIFO hold queue, served
by whichever replica frees first), and the simulator's replica model runs as many. vLLM's is
`--max-num-seqs` (256 by default); the sim engine's is `--max-concurrency` (its `SimConfig` default).
"""

from __future__ import annotations

from dataclasses import fields

from inferstack.engines.sim.config import SimConfig
from inferstack.spec import DeploymentSpec, Engine

VLLM_DEFAULT_MAX_NUM_SEQS = 256
SIM_DEFAULT_MAX_CONCURRENCY: int = next(f.default for f in fields(SimConfig) if f.name == "max_concurrency")
_FLAG = {Engine.vllm: "--max-num-seqs", Engine.sim: "--max-concurrency"}


def engine_capacity(spec: DeploymentSpec) -> int:
    """Sequences one replica runs at once: `--max-num-seqs 32` in engine_args -> 32; unset -> the default."""
    flag, args = _FLAG[spec.engine], spec.engine_args
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]
    values += [arg.split("=", 1)[1] for arg in args if arg.startswith(flag + "=")]
    for value in values:
        if value.isdigit() and int(value) > 0:
            return int(value)  # a malformed value is the engine's to refuse; the default stands meanwhile
    return SIM_DEFAULT_MAX_CONCURRENCY if spec.engine is Engine.sim else VLLM_DEFAULT_MAX_NUM_SEQS
