"""The batch objects clients see and send, exactly in OpenAI's shape so the official client parses them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inferstack.batches.tables import BatchRow
from inferstack.batches.transitions import COMPLETION_WINDOWS_S, BatchStatus
from inferstack.plain_text import PLAIN_PATTERN, PlainText, control_character_problem

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class CreateBatch(BaseModel):
    # Unknown fields (e.g. output_expires_after from newer clients) are accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    input_file_id: PlainText(64, min_length=1)
    endpoint: Endpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, json_schema_extra={
        "maxProperties": MAX_METADATA_PAIRS,
        "propertyNames": {"maxLength": MAX_METADATA_KEY, "pattern": PLAIN_PATTERN},
        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE, "pattern": PLAIN_PATTERN}})

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA_PAIRS:
            raise ValueError(f"at most {MAX_METADATA_PAIRS} key-value pairs, got {len(value)}")
        for key, item in value.items():
            if len(key) > MAX_METADATA_KEY:
                raise ValueError(f"key {key[:20]!r}... is longer than {MAX_METADATA_KEY} characters")
            if len(item) > MAX_METADATA_VALUE:
                raise ValueError(f"the value of {key!r} is longer than {MAX_METADATA_VALUE} characters")
            problem = control_character_problem(key) or control_character_problem(item)
            if problem:
                raise ValueError(f"{key!r}: {problem}")
        return value

    @property
    def window_s(self) -> int:
        return COMPLETION_WINDOWS_S[self.completion_window]


class BatchError(BaseModel):
    code: str
    line: int | None = None
    message: str
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None

    @classmethod
    def from_row(cls, row: BatchRow) -> BatchObject:
        errors = BatchErrors(data=[BatchError(**e) for e in row.errors]) if row.errors else None
        return cls(
            id=row.id, endpoint=row.endpoint, errors=errors, input_file_id=row.input_file_id,
            completion_window=row.completion_window, status=BatchStatus(row.status),
            output_file_id=row.output_file_id, error_file_id=row.error_file_id,
            created_at=int(row.created_at), in_progress_at=_ts(row.in_progress_at),
            expires_at=_ts(row.expires_at), finalizing_at=_ts(row.finalizing_at),
            completed_at=_ts(row.completed_at), failed_at=_ts(row.failed_at), expired_at=_ts(row.expired_at),
            cancelling_at=_ts(row.cancelling_at), cancelled_at=_ts(row.cancelled_at),
            request_counts=RequestCounts(total=row.total, completed=row.completed, failed=row.failed),
            metadata=row.user_metadata,
        )


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, rows: list[BatchRow], has_more: bool) -> BatchList:
        return cls(data=[BatchObject.from_row(r) for r in rows], first_id=rows[0].id if rows else None,
                   last_id=rows[-1].id if rows else None, has_more=has_more)
