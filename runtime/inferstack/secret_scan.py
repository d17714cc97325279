"""Does a value look like a secret? A pure detector for places where no secret may go.

`engine_args` are stored in clear, printed by `inferstack apply`, shown in `pulumi preview` and written
into launch documents (SSM, ConfigMaps): a token there leaks everywhere at once. The spec refuses one
(`DeploymentSpec`), and the policy pack reads the same patterns. A finding names the kind of secret
and where it is, never the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# Well-known token shapes: Hugging Face, OpenAI-style (and this platform's `isk-` keys), AWS access keys.
TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    "an API key (sk-...)": re.compile(r"(?<![A-Za-z0-9])i?sk-[A-Za-z0-9_-]{16,}"),
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
}
SECRET_FLAGS = frozenset({"--api-key", "--hf-token", "--token", "--api_key", "--hf_token", "--password"})
"""Flags whose value is a secret (vLLM's `--api-key`, the HF CLI's `--token`)."""
ASSIGNMENT = re.compile(r"(?i)\b(?:[a-z_]*token|[a-z_]*key|password|secret)=([^\s,;&]+)")
MIN_ENTROPY_BITS_PER_CHAR = 3.5
"""A random 20-character base62 token scores ~4.2; `model-len` or `bfloat16` score under 3.2."""
MIN_ASSIGNED_LENGTH = 16


REDACTED = "[redacted]"
_FLAG_VALUE = re.compile(r"(?i)(--(?:api[-_]key|hf[-_]token|token|password)[= ]+)(\S+)")
# `key=value`, `"api_key": "value"`, `HF_TOKEN: value`: a name that says secret, then its value.
_NAMED_VALUE = re.compile(r"""(?i)(\b[a-z_]*(?:token|key|password|secret)['"]?\s*[:=]\s*['"]?)([^\s'",;&}]+)""")


def redact(text: str, known: Sequence[str] = ()) -> str:
    """`text` (a log line) with anything that looks like a secret replaced by `[redacted]`: the token
    shapes, the values of secret flags and of secret-named settings, and the `known` secrets verbatim."""
    for secret in known:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in TOKEN_PATTERNS.values():
        text = pattern.sub(REDACTED, text)
    text = _FLAG_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _NAMED_VALUE.sub(lambda m: m.group(1) + (REDACTED if m.group(2) != REDACTED else m.group(2)), text)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0


def high_entropy(value: str) -> bool:
    return len(value) >= MIN_ASSIGNED_LENGTH and entropy(value) >= MIN_ENTROPY_BITS_PER_CHAR


def secret_findings(args: Sequence[str]) -> list[str]:
    """What in a list of command-line arguments looks like a secret, e.g.
    `["--api-key", "abc"]` -> `["argument 1 is the value of --api-key"]`. Empty when nothing does."""
    findings: list[str] = []
    flag_values: set[int] = set()
    for index, arg in enumerate(args):
        if index in flag_values:
            continue
        flag, equals, value = arg.partition("=")
        if flag.lower() in SECRET_FLAGS:
            if equals and value:
                findings.append(f"argument {index} gives {flag} a value")
            elif not equals and index + 1 < len(args):
                findings.append(f"argument {index + 1} is the value of {flag}")
                flag_values.add(index + 1)
            continue
        for kind, pattern in TOKEN_PATTERNS.items():
            if pattern.search(arg):
                findings.append(f"argument {index} contains {kind}")
                break
        else:
            if any(high_entropy(m.group(1)) for m in ASSIGNMENT.finditer(arg)):
                findings.append(f"argument {index} assigns a token-like value")
    return findings
