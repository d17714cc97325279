"""Build a tiny RANDOM-WEIGHT Llama checkpoint for smoke-testing a real vLLM engine.

    python tiny_llama.py OUT_DIR

This is a test artefact, not a model: its weights are random (seeded), so it "answers" with
arbitrary tokens. It exists so the end-to-end tests can start a real vLLM replica in seconds,
fully offline, with no download: it is never listed, served or described as a real model.

What it writes to OUT_DIR (a Hugging Face checkpoint that vLLM loads with ``--model OUT_DIR``):
- a byte-level BPE tokenizer (~1k tokens) trained with ``tokenizers`` on a small built-in text,
  saved as a ``PreTrainedTokenizerFast`` with bos/eos/pad tokens and a simple chat template, so
  ``/v1/chat/completions`` works;
- a ``LlamaConfig`` (hidden 128, 2 heads of head_dim 64, 2 layers, intermediate 256, 512
  positions, bfloat16) and its random weights as safetensors. The vLLM CPU attention kernel
  rejects head_dim below 64 (16 fails), hence 2 heads rather than more.

Idempotent: nothing is done when OUT_DIR/config.json exists. The files are written to a
temporary sibling directory first and moved into place, so an interrupted run leaves no
half-written checkpoint behind.

Run it with the vLLM engine's python (which has torch, transformers and tokenizers); the
``inferstack`` package itself never imports this module, nor torch.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy, and only in the vLLM venv: imported lazily at run time
    from transformers import PreTrainedTokenizerFast

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
VOCAB_SIZE = 1024
SEED = 0

# Jinja template used by /v1/chat/completions; ends with the assistant header when asked.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_TEXT = """\
Inference servers turn a trained language model into a service that answers requests.
A client sends a prompt, the server splits it into tokens, runs the model one step at a time,
and streams the generated tokens back as they are produced. Batching many requests together
keeps the accelerator busy; a cache of keys and values avoids recomputing the prompt for every
new token. Autoscaling adds replicas when queues grow and removes them when traffic is quiet.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
Hello, how are you today? I am fine, thank you. What is the weather like in the mountains?
It is sunny in the morning and rainy in the evening, with a light wind from the west.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 32 64 128 256 512 1024 2048 4096.
Punctuation and symbols: ( ) [ ] { } < > = + - * / % & | ^ ~ ! ? . , ; : ' " @ # $ _ \\
def main(argv: list[str]) -> int:
    return 0
{"model": "tiny", "messages": [{"role": "user", "content": "Say hello."}], "stream": true}
"""

_WORD_TEXT = """\
request response token model server client replica queue cache memory latency throughput
deploy scale stream batch prompt answer system user assistant engine gateway route
metric health ready start stop wait time second minute hour day week first last next
small large
"""
_WORDS = _WORD_TEXT.split()


def _corpus() -> list[str]:
    """The built-in training text, plus deterministic word combinations for more merges."""
    lines = _TEXT.splitlines()
    n = len(_WORDS)
    for i in range(n):
        for step in (1, 3, 7):
            lines.append(" ".join(_WORDS[(i + k * step) % n] for k in range(8)))
            lines.append(" ".join(w.capitalize() for w in _WORDS[i : i + 5]) + ".")
    return lines


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(out_dir: Path) -> bool:
    """Write the checkpoint to ``out_dir``; return False when it was already there."""
    if (out_dir / "config.json").exists():
        return False

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        num_hidden_layers=2,
        intermediate_size=256,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)  # safetensors is the only format transformers 5 writes
        tokenizer.save_pretrained(tmp)
        if not any(tmp.glob("*.safetensors")):
            raise RuntimeError(f"no safetensors file written to {tmp}")
        tmp.chmod(0o755)  # mkdtemp makes it private; the checkpoint is meant to be shared
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out_dir.exists():
            out_dir.rmdir()  # only an empty leftover directory; anything else is an error
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print(f"usage: {argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(argv[1]).resolve()
    if build(out_dir):
        print(f"built tiny random-weight Llama (smoke-test artefact) in {out_dir}")
    else:
        print(f"{out_dir}/config.json exists; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
