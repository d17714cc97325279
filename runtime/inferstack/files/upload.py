"""Receive a multipart upload straight into the blob store, checking the limits as bytes arrive.

Starlette's form parser would spool the whole file to a temporary file first (and enforces no size
limit on files); parsing the request stream ourselves sends each chunk on to storage as it comes,
so a 200 MB upload costs one 64 KB chunk of memory, and an oversized one stops being stored at the
first byte past the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from inferstack.files.blobs import AsyncBlobWriter, BlobStore
from inferstack.files.limits import MAX_FILE_BYTES, MAX_FILE_LINES
from inferstack.plain_text import control_character_problem

PURPOSES = frozenset({"batch"})
MAX_FILENAME_LENGTH = 255
MAX_FIELD_BYTES = 4096  # the non-file fields (purpose, expires_after[...]) are a few bytes each
# Multipart framing around the file: boundaries and part headers, generously.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadRejected(Exception):
    """What is wrong with an upload, in words for the caller; `param` names the form field at fault."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class UploadTooLarge(UploadRejected):
    """The file breaks a size limit (bytes or lines)."""


class LineCounter:
    """Counts non-blank lines across chunk boundaries (the requests of a JSONL file)."""

    def __init__(self) -> None:
        self.lines = 0
        self._open = False  # the current, unfinished line has content

    def feed(self, data: bytes) -> None:
        pieces = data.split(b"\n")
        for piece in pieces[:-1]:
            if self._open or piece.strip():
                self.lines += 1
            self._open = False
        self._open = self._open or bool(pieces[-1].strip())

    def finish(self) -> int:
        if self._open:
            self.lines += 1
            self._open = False
        return self.lines


@dataclass
class Upload:
    filename: str
    purpose: str
    bytes: int
    lines: int


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    value: bytearray = field(default_factory=bytearray)


def _too_large() -> UploadTooLarge:
    return UploadTooLarge(f"The file is larger than the limit of {MAX_FILE_BYTES // 2**20} MB.",
                          code="file_too_large", param="file")


def _too_many_lines() -> UploadTooLarge:
    return UploadTooLarge(f"The file has more than the limit of {MAX_FILE_LINES:,} lines.",
                          code="too_many_lines", param="file")


class _Receiver:
    """The parser's callbacks only collect events; `feed` acts on them between two network chunks
    (writing to storage is async, the callbacks are not). The first problem raises at once: clients
    (httpx, curl) read a response that comes before their upload is finished."""

    def __init__(self, boundary: bytes, writer: AsyncBlobWriter) -> None:
        self._writer = writer
        self._events: list[tuple[str, bytes]] = []
        self._parser = MultipartParser(boundary, {
            "on_part_begin": lambda: self._events.append(("begin", b"")),
            "on_header_field": lambda d, s, e: self._events.append(("field", d[s:e])),
            "on_header_value": lambda d, s, e: self._events.append(("value", d[s:e])),
            "on_headers_finished": lambda: self._events.append(("headers", b"")),
            "on_part_data": lambda d, s, e: self._events.append(("data", d[s:e])),
            "on_part_end": lambda: self._events.append(("part_end", b"")),
            "on_end": lambda: self._events.append(("end", b"")),
        })
        self._part = _Part()
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.bytes = 0
        self.counter = LineCounter()
        self.ended = False

    async def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except Exception as error:  # the parser's errors carry no user-facing message of their own
            raise UploadRejected(f"The multipart body is malformed: {error}") from None
        events, self._events = self._events, []
        for kind, data in events:
            await self._on(kind, data)

    async def _on(self, kind: str, data: bytes) -> None:
        part = self._part
        if kind == "begin":
            self._part = _Part()
        elif kind == "field":
            part.headers.append((data, b""))
        elif kind == "value":
            name, value = part.headers[-1]
            part.headers[-1] = (name, value + data)
        elif kind == "headers":
            self._start(part)
        elif kind == "data" and part.name == "file":
            self.bytes += len(data)
            self.counter.feed(data)
            if self.bytes > MAX_FILE_BYTES:
                raise _too_large()
            if self.counter.lines > MAX_FILE_LINES:
                raise _too_many_lines()
            await self._writer.write(data)
        elif kind == "data":
            if len(part.value) + len(data) > MAX_FIELD_BYTES:
                raise UploadRejected(f"The form field {part.name!r} is too long.", param=part.name)
            part.value += data
        elif kind == "part_end" and part.name != "file":
            self.fields[part.name] = part.value.decode("utf-8", "replace")
        elif kind == "end":
            self.ended = True

    def _start(self, part: _Part) -> None:
        for name, value in part.headers:
            if name.lower() == b"content-disposition":
                _, options = parse_options_header(value)
                part.name = options.get(b"name", b"").decode("utf-8", "replace")
                raw_filename = options.get(b"filename")
                if raw_filename is not None:
                    part.filename = raw_filename.decode("utf-8", "replace")
        if part.name == "file":
            if self.filename is not None:
                raise UploadRejected("Send exactly one file per upload.", param="file")
            self.filename = part.filename or "upload.jsonl"
            problem = control_character_problem(self.filename) or (
                len(self.filename) > MAX_FILENAME_LENGTH and f"must be at most {MAX_FILENAME_LENGTH} characters")
            if problem:
                raise UploadRejected(f"The file name {problem}.", param="file")

    def finish(self) -> Upload:
        """After the last chunk: the whole form, or what is wrong with it."""
        if not self.ended:
            raise UploadRejected("The multipart body ended early: the upload was cut off.")
        if self.filename is None:
            raise UploadRejected("The upload has no 'file' field.", param="file")
        if self.counter.finish() > MAX_FILE_LINES:  # the last line may have no newline
            raise _too_many_lines()
        purpose = self.fields.get("purpose")
        if purpose is None:
            raise UploadRejected("The upload has no 'purpose' field; use purpose=batch.", param="purpose")
        if purpose not in PURPOSES:
            raise UploadRejected(f"purpose {purpose!r} is not supported here; use 'batch'.", param="purpose")
        return Upload(filename=self.filename, purpose=purpose, bytes=self.bytes, lines=self.counter.lines)


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str | None, content_length: int | None,
                         blobs: BlobStore, key: str) -> Upload:
    """Store the `file` field of a multipart body under `key`; raise UploadRejected (storing nothing)
    if the body is malformed or the purpose is not supported, UploadTooLarge if the file breaks a limit."""
    if content_length is not None and content_length > MAX_FILE_BYTES + MULTIPART_OVERHEAD_BYTES:
        raise _too_large()
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadRejected("Upload the file as multipart/form-data with the fields 'file' and 'purpose'.")
    writer = AsyncBlobWriter(blobs, key)
    receiver = _Receiver(boundary, writer)
    try:
        async for chunk in chunks:
            await receiver.feed(chunk)
        upload = receiver.finish()
        await writer.commit()
    finally:
        await writer.abort()  # nothing after a commit; else the partial blob goes
    return upload
