"""The blob stores: a local directory, and S3 against a local emulator (moto's server) over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from inferstack.files.blobs import (
    S3_PART_BYTES,
    AsyncBlobWriter,
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    aiter_chunks,
    aiter_lines,
    blob_store_from_url,
    write_stream,
)
from inferstack.settings import S3Settings


@pytest.fixture
def s3_store(s3_env: dict[str, str], request: pytest.FixtureRequest) -> S3BlobStore:
    bucket = f"inferstack-{request.node.name.lower().replace('_', '-').replace('[', '-').strip(']')[:40]}"
    boto3.client("s3", endpoint_url=s3_env["INFERSTACK_S3_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
    store = blob_store_from_url(f"s3://{bucket}/state/files", Path("unused"), S3Settings.from_env())
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return request.getfixturevalue("s3_store")


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in aiter_chunks(store, key, 7)])


async def test_a_streamed_write_reads_back_in_chunks_and_lines(any_store: BlobStore) -> None:
    size = await write_stream(any_store, "files/a", _pieces(b'{"a": 1}\r\n{"b"', b': 2}\n\n{"c": 3}'))
    assert size == any_store.size("files/a") == 28
    assert await read(any_store, "files/a") == b'{"a": 1}\r\n{"b": 2}\n\n{"c": 3}'
    assert [line async for line in aiter_lines(any_store, "files/a")] == [b'{"a": 1}', b'{"b": 2}', b"", b'{"c": 3}']


async def test_a_blob_appears_only_when_committed_and_an_abort_keeps_the_old_one(any_store: BlobStore) -> None:
    await write_stream(any_store, "out/result", _pieces(b"first version\n"))
    writer = AsyncBlobWriter(any_store, "out/result", buffer_bytes=4)
    await writer.write(b"second version, unfinished")
    assert await read(any_store, "out/result") == b"first version\n"
    await writer.abort()
    assert await read(any_store, "out/result") == b"first version\n"
    async with AsyncBlobWriter(any_store, "out/result", buffer_bytes=4) as replacing:
        for word in (b"third ", b"version\n"):
            await replacing.write(word)
    assert await read(any_store, "out/result") == b"third version\n"


async def test_missing_blobs_are_reported_and_deleting_twice_is_fine(any_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        any_store.size("nothing/here")
    with pytest.raises(BlobNotFound):
        await read(any_store, "nothing/here")
    await write_stream(any_store, "gone", _pieces(b"x"))
    any_store.delete("gone")
    any_store.delete("gone")
    with pytest.raises(BlobNotFound):
        any_store.size("gone")


async def test_a_large_s3_blob_goes_up_in_parts_and_comes_back_whole(s3_store: S3BlobStore, moto_endpoint: str) -> None:
    line = b'{"custom_id": "%08d", "padding": "' + b"x" * 1000 + b'"}\n'
    length = len(line % 0)
    count = (2 * S3_PART_BYTES + 12345) // length + 1

    async def lines() -> AsyncIterator[bytes]:
        for i in range(count):
            yield line % i

    size = await write_stream(s3_store, "big.jsonl", lines())
    assert size == count * length == s3_store.size("big.jsonl") and size > 2 * S3_PART_BYTES
    key = f"{s3_store.prefix}/big.jsonl"
    head = boto3.client("s3", endpoint_url=moto_endpoint).head_object(Bucket=s3_store.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload, not one buffered PUT
    seen = 0
    async for raw in aiter_lines(s3_store, "big.jsonl"):
        assert raw + b"\n" == line % seen
        seen += 1
    assert seen == count


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    for key in ("../outside", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            store.open_writer(key)


def test_the_url_chooses_the_store(tmp_path: Path) -> None:
    assert isinstance(blob_store_from_url(None, tmp_path, S3Settings()), LocalBlobStore)
    local = blob_store_from_url(str(tmp_path / "elsewhere"), tmp_path, S3Settings())
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "elsewhere"
    with pytest.raises(ValueError):
        S3BlobStore("s3://")
    store = S3BlobStore("s3://results/batches/", client=object())
    assert (store.bucket, store.prefix) == ("results", "batches")
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        S3BlobStore("https://results.s3.amazonaws.com/batches", client=object())
