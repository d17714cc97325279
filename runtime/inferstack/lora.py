"""LoRA adapters of a base deployment: what an adapter is, what it is called, and the engine limits it needs.

An adapter is served by its base deployment's replicas (vLLM `--enable-lora`), and callers name it as
`model` in the form `<deployment-name>:<adapter>`. Deployment names are unique per tenant and can hold
no `:`, nor can adapter names, so the form is unambiguous within a tenant, and another tenant's
`chat:sql` is a different model. Replicas serve the adapter under that same full name, so the gateway
never rewrites a body. A deployment created without a name is named by its id: `dep-...:sql`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inferstack.plain_text import PlainText
from inferstack.s3 import SCHEME as S3_SCHEME

SEPARATOR = ":"
ADAPTER_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
"""An S3 bucket's name, as S3 allows it."""
SOURCE_PATTERN = (r"^(/[^\x00-\x1f\x7f]*|[^\x00-\x20\x7f/:]+/[^\x00-\x20\x7f/:]+"
                  rf"|s3://{S3_BUCKET}(/[^\x00-\x20\x7f]*)?)$")
"""An absolute path, a Hugging Face repo id (owner/name) or an S3 prefix (s3://bucket/prefix); in the JSON
schema too, so both agree."""
MAX_ADAPTERS = 64
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM takes for `--max-lora-rank`."""
DEFAULT_MAX_LORA_RANK = 16
"""vLLM's own default: what the replicas reserve when no adapter states a higher rank."""


class AdapterSpec(BaseModel):
    """One LoRA adapter of a base deployment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., max_length=63, json_schema_extra={"pattern": ADAPTER_NAME_PATTERN},
                      description="Unique within the deployment; callers use `<deployment-name>:<name>` as model.")
    source: PlainText(1000, min_length=1) = Field(
        ..., description="A Hugging Face repo id (gated ones through the deployment's hf_token), an "
        "absolute path the replicas can read (a directory with adapter_config.json), or s3://bucket/prefix "
        "(that directory in S3, fetched before the engine loads it).",
        json_schema_extra={"pattern": SOURCE_PATTERN})
    rank: int | None = Field(None, ge=1, le=512, description="The adapter's LoRA rank `r`, when known: checked "
                             "against max_lora_rank, and raises the rank the replicas reserve.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.match(ADAPTER_NAME_PATTERN, name):
            raise ValueError(f"adapter name {name!r} must be lower-case letters, digits, '.', '_' and '-', "
                             "1-63 characters, starting and ending with a letter or digit")
        return name

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if not re.match(SOURCE_PATTERN, source):
            raise ValueError(f"source {source!r} must be a Hugging Face repo id (owner/name), an absolute path "
                             "or s3://bucket/prefix")
        return source.rstrip("/") if source.startswith(S3_SCHEME) else source


def engine_path(source: str, fetched: Mapping[str, str]) -> str:
    """What an engine is given for an adapter's `source`: vLLM reads local directories and Hugging Face
    repos only, so an S3 one is given the directory it was `fetched` into (by the control plane for its own
    replicas, by a cloud replica's launch for itself)."""
    if source.startswith(S3_SCHEME):
        return fetched[source]
    return source


def adapter_model(deployment_name: str, adapter: str) -> str:
    """The `model` callers send for `adapter` of the deployment named `deployment_name`."""
    return f"{deployment_name}{SEPARATOR}{adapter}"


def split_model(model: str) -> tuple[str, str | None]:
    """`chat:sql` -> ("chat", "sql"); `chat` -> ("chat", None)."""
    base, separator, adapter = model.partition(SEPARATOR)
    return (base, adapter) if separator else (model, None)


def needed_rank(adapters: list[AdapterSpec]) -> int:
    """The smallest `--max-lora-rank` vLLM takes that holds every stated rank (16 at least)."""
    highest = max([a.rank for a in adapters if a.rank is not None], default=DEFAULT_MAX_LORA_RANK)
    return next(r for r in LORA_RANKS if r >= max(highest, DEFAULT_MAX_LORA_RANK))


class LoraLimits(BaseModel):
    """What a replica's engine is started with: whether LoRA is on and the slots and rank it reserves."""

    model_config = ConfigDict(frozen=True)

    max_loras: int
    max_lora_rank: int
