"""What an API key grants: its scope, its limits and its lifetime, as plain data.

The store keeps these per key, the key ring hands them to the API and the gateway with the tenant, and
the API and the CLI accept them (pydantic checks them once, at the boundary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class KeyScope(StrEnum):
    """`admin` manages the tenant's deployments and keys; `inference` only calls the models (chat,
    completions, embeddings, the model list, files and batches) and reads deployments."""

    admin = "admin"
    inference = "inference"


class KeyLimits(BaseModel):
    """Per-key limits; None is unlimited. Tokens are counted as OpenAI's gateway does at admission: the
    prompt's characters / 4 plus `max_tokens` (see `gateway/limits.py`)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=1_000_000_000)
    max_concurrent_requests: int | None = Field(None, ge=1, le=100_000)

    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None \
            and self.max_concurrent_requests is None


@dataclass(frozen=True)
class KeyGrant:
    """What a presented key may do: whose it is, its scope and limits, and until when."""

    key_id: str
    tenant_id: str
    scope: KeyScope
    limits: KeyLimits
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90' or '90s', '15m', '12h', '30d' -> seconds; a ValueError names what is accepted."""
    match = _DURATION.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: give a positive number with s, m, h or d (e.g. 30d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
