"""Blob storage for uploads and batch results: a local directory by default, S3 by URL.

The interface is synchronous (boto3 is). Async callers go through `AsyncBlobWriter`, `write_stream`,
`aiter_chunks` and `aiter_lines`, which run every blocking step in a thread so the event loop never
waits on a disk or the network. Writes are atomic: a blob appears whole on `commit()` or not at all,
so a crash mid-upload (or mid-finalize) never leaves a truncated file behind a file id.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Generator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Protocol

from inferstack.s3 import client as s3_client
from inferstack.s3 import location as s3_location
from inferstack.settings import S3Settings

CHUNK_BYTES = 1 << 20
# S3 multipart parts must be at least 5 MiB (except the last); 8 MiB keeps the writer's buffer small.
S3_PART_BYTES = 8 << 20


class BlobNotFound(KeyError):
    pass


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> int:
        """Make the blob visible under its key (replacing any previous one); returns its size."""
        ...

    def abort(self) -> None:
        """Throw away what was written; the key keeps its previous content, if any."""
        ...


class BlobStore(Protocol):
    def open_writer(self, key: str) -> BlobWriter: ...

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Generator[bytes, None, None]:
        """The blob's bytes in order, at most `chunk_size` at a time. Raises BlobNotFound."""
        ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        ...


def _checked_key(key: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"invalid blob key {key!r}")
    return path


# --- local directory ------------------------------------------------------------------------------
class _LocalWriter:
    def __init__(self, target: Path) -> None:
        self._target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed over it: readers never see a partial file.
        self._temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        self._file = self._temp.open("wb")
        self._size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)

    def commit(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self._target)
        return self._size

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_checked_key(key).parts)

    def open_writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self._path(key))

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Generator[bytes, None, None]:
        try:
            file = self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        with file:
            while chunk := file.read(chunk_size):
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# --- S3 -------------------------------------------------------------------------------------------
class _S3Writer:
    """Buffers up to one part; small blobs are one PUT, large ones a multipart upload."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= S3_PART_BYTES:
            part = bytes(self._buffer[:S3_PART_BYTES])
            del self._buffer[:S3_PART_BYTES]
            self._upload_part(part)

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        result = self._client.upload_part(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                          PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": result["ETag"]})

    def commit(self) -> int:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._key,
                                                   UploadId=self._upload_id,
                                                   MultipartUpload={"Parts": self._parts})
        self._buffer.clear()
        return self._size

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


class S3BlobStore:
    """Blobs under `s3://bucket/prefix`. Endpoint (MinIO, a local emulator) and region come from the
    settings; credentials from boto3's usual chain."""

    def __init__(self, url: str, s3: S3Settings | None = None, client: Any | None = None) -> None:
        self.bucket, self.prefix = s3_location(url)
        self._client = client or s3_client(s3 or S3Settings())

    def _key(self, key: str) -> str:
        checked = str(_checked_key(key))
        return f"{self.prefix}/{checked}" if self.prefix else checked

    def open_writer(self, key: str) -> BlobWriter:
        return _S3Writer(self._client, self.bucket, self._key(key))

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Generator[bytes, None, None]:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._client.exceptions.NoSuchKey:
            raise BlobNotFound(key) from None
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise BlobNotFound(key) from None
            raise

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))


def blob_store_from_url(url: str | None, default_dir: Path, s3: S3Settings) -> BlobStore:
    """`None` or empty: a directory under the home; `s3://bucket/prefix`: S3; anything else: a path."""
    if not url:
        return LocalBlobStore(default_dir)
    if url.startswith("s3://"):
        return S3BlobStore(url, s3)
    return LocalBlobStore(Path(url.removeprefix("file://")).expanduser())


# --- async helpers --------------------------------------------------------------------------------
class AsyncBlobWriter:
    """Appends from async code: small writes (one result line) gather into a buffer that goes to the
    store in a thread once it holds `buffer_bytes`, so a 50,000-line result file takes ~50 hops."""

    def __init__(self, store: BlobStore, key: str, buffer_bytes: int = CHUNK_BYTES) -> None:
        self._store = store
        self._key = key
        self._buffer_bytes = buffer_bytes
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._writer: BlobWriter | None = None
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        if self._pending_size >= self._buffer_bytes:
            await self._drain()

    async def _drain(self) -> None:
        if self._writer is None:
            self._writer = await asyncio.to_thread(self._store.open_writer, self._key)
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        await asyncio.to_thread(self._writer.write, data)

    async def commit(self) -> int:
        await self._drain()
        assert self._writer is not None
        writer, self._writer = self._writer, None
        return await asyncio.to_thread(writer.commit)

    async def abort(self) -> None:
        """Throw away what was written; after a commit this does nothing."""
        self._pending.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.abort)

    async def __aenter__(self) -> AsyncBlobWriter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if kind is None:
            await self.commit()
        else:
            await self.abort()


async def write_stream(store: BlobStore, key: str, chunks: AsyncIterator[bytes]) -> int:
    """Stream `chunks` into a new blob without holding it in memory; returns its size."""
    async with AsyncBlobWriter(store, key) as writer:
        async for chunk in chunks:
            await writer.write(chunk)
    return writer.size


async def aiter_chunks(store: BlobStore, key: str, chunk_size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    chunks = store.iter_chunks(key, chunk_size)
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
    finally:
        await asyncio.to_thread(chunks.close)


async def aiter_lines(store: BlobStore, key: str) -> AsyncIterator[bytes]:
    """Every physical line of the blob, without its line ending, in order (so line numbers are
    positions in this sequence, counting blank lines). Memory holds one chunk plus one line."""
    pending: list[bytes] = []  # the start of a line that continues in the next chunk
    async for chunk in aiter_chunks(store, key):
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            pending.append(chunk)
            continue
        pending.append(lines[0])
        yield b"".join(pending).removesuffix(b"\r")
        for line in lines[1:-1]:
            yield line.removesuffix(b"\r")
        pending = [lines[-1]]
    last = b"".join(pending)
    if last:
        yield last.removesuffix(b"\r")
