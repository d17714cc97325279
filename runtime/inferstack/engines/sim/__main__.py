"""The sim engine's command line: `python -m inferstack.engines.sim`, with the vLLM flags it imitates."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import get_args

from prometheus_client import disable_created_metrics

from inferstack.engines.sim.config import SimConfig, Task
from inferstack.engines.sim.server import serve


def parse_args(argv: Sequence[str] | None) -> SimConfig:
    parser = argparse.ArgumentParser(
        prog="python -m inferstack.engines.sim",
        description="Simulated vLLM-compatible OpenAI server (deterministic filler text, timing model).",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+", required=True, dest="served_model_names")
    # Like vLLM, the key may come from VLLM_API_KEY, which keeps it out of `ps` output.
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY") or None,
                        help="guard /v1 routes with this bearer key (default: $VLLM_API_KEY)")
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="time to first token once running")
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="decode speed; 0 means instant")
    parser.add_argument("--max-concurrency", type=int, default=16, help="sequences running at once")
    parser.add_argument("--task", choices=get_args(Task), default="generate")
    parser.add_argument("--startup-delay-s", type=float, default=0.0, help="simulated weight loading")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--enable-lora", action="store_true", help="serve LoRA adapters, as vLLM's flag")
    parser.add_argument("--max-loras", type=int, default=1)
    parser.add_argument("--max-lora-rank", type=int, default=16)
    parser.add_argument("--lora-modules", nargs="+", default=[], help="name=path of adapters loaded at start")
    args = parser.parse_args(argv)
    try:
        return SimConfig(
            served_model_names=tuple(args.served_model_names),
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            ttft_ms=args.ttft_ms,
            tokens_per_s=args.tokens_per_s,
            max_concurrency=args.max_concurrency,
            task=args.task,
            startup_delay_s=args.startup_delay_s,
            max_model_len=args.max_model_len,
            enable_lora=args.enable_lora,
            max_loras=args.max_loras,
            max_lora_rank=args.max_lora_rank,
            lora_modules=tuple(args.lora_modules),
            runtime_lora_updating=os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in ("1", "true"),
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    # Process-wide, so only here: drop the `_created` series, which vLLM's scrape output lacks too.
    disable_created_metrics()
    try:
        import uvloop  # installed with uvicorn[standard]; roughly doubles requests/sec
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
