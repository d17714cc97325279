"""Deterministic filler: the words a generate request gets and the vectors an embed request gets.

The same input always gets the same output, so tests and load runs are repeatable; none of it means anything.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib

EMBEDDING_DIM = 384

# One filler word is one token. Short common words keep the chars/token ratio near real text (~4).
_WORDS: tuple[str, ...] = (
    "the", "quick", "model", "sends", "a", "short", "reply", "about", "load", "and", "time",
    "while", "tokens", "flow", "from", "one", "replica", "to", "many", "clients", "on", "this",
    "simulated", "engine", "with", "steady", "pace", "so", "tests", "can", "measure", "it",
)  # fmt: skip
_WORD_STRIDE = 7  # coprime with len(_WORDS): the cycle visits every word before repeating


def filler_tokens(seed_text: str, salt: int, count: int) -> list[str]:
    """`count` tokens for one choice (`salt` is the choice index): the same prompt always gets the same words."""
    start = zlib.crc32(seed_text.encode()) + salt * 7919
    n = len(_WORDS)
    tokens = [" " + _WORDS[(start + i * _WORD_STRIDE) % n] for i in range(count)]
    if tokens:
        tokens[0] = tokens[0][1:].capitalize()
    return tokens


def embedding(seed_text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of the input."""
    digest = hashlib.shake_256(seed_text.encode()).digest(2 * EMBEDDING_DIM)
    raw = struct.unpack(f"<{EMBEDDING_DIM}h", digest)[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]
