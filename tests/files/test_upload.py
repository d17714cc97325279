"""Streaming uploads: a 200 MB file goes to storage a chunk at a time; limits stop it and store nothing."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inferstack.files.blobs import LocalBlobStore
from inferstack.files.limits import MAX_FILE_BYTES
from inferstack.files.upload import LineCounter, UploadRejected, UploadTooLarge, receive_upload

BOUNDARY = b"inferstack-test-boundary"
CONTENT_TYPE = "multipart/form-data; boundary=" + BOUNDARY.decode()


async def form(file_bytes: int, line_bytes: int = 8192, purpose: bytes = b"batch",
               chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A multipart body whose file part is `file_bytes` of JSONL, produced (and sent) chunk by chunk."""
    yield (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose + b"\r\n--"
           + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
           b"Content-Type: application/jsonl\r\n\r\n")
    line = b"{" + b" " * (line_bytes - 3) + b"}\n"
    sent = 0
    while sent < file_bytes:
        piece = (line * (chunk // line_bytes + 1))[: min(chunk, file_bytes - sent)]
        sent += len(piece)
        yield piece
    yield b"\r\n--" + BOUNDARY + b"--\r\n"


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_a_200_mb_upload_is_stored_whole_with_flat_memory(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    tracemalloc.start()
    try:
        upload = await receive_upload(form(MAX_FILE_BYTES), CONTENT_TYPE, None, blobs, "files/big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upload.bytes == MAX_FILE_BYTES == blobs.size("files/big")
    assert (upload.filename, upload.purpose, upload.lines) == ("big.jsonl", "batch", MAX_FILE_BYTES // 8192)
    assert peak < 8 * 2**20, f"peak Python memory {peak / 2**20:.1f} MB while streaming 200 MB"


async def test_one_byte_over_200_mb_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(UploadTooLarge) as refused:
        await receive_upload(form(MAX_FILE_BYTES + 1), CONTENT_TYPE, None, blobs, "files/big")
    assert refused.value.code == "file_too_large"
    assert "200 MB" in refused.value.message
    assert stored_files(tmp_path / "blobs") == []


async def test_a_declared_oversize_body_is_refused_before_reading_it(tmp_path: Path) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    with pytest.raises(UploadTooLarge) as refused:
        await receive_upload(never(), CONTENT_TYPE, 3 * MAX_FILE_BYTES, LocalBlobStore(tmp_path), "files/x")
    assert refused.value.code == "file_too_large"


async def test_a_body_cut_off_midway_stores_nothing(tmp_path: Path) -> None:
    async def cut() -> AsyncIterator[bytes]:
        parts = form(100_000)
        yield await anext(parts)
        yield await anext(parts)

    with pytest.raises(UploadRejected, match="cut off"):
        await receive_upload(cut(), CONTENT_TYPE, None, LocalBlobStore(tmp_path / "blobs"), "files/x")
    assert stored_files(tmp_path / "blobs") == []


@pytest.mark.parametrize(("chunks", "lines"), [
    ([b"a\nb\n"], 2), ([b"a\nb"], 2), ([b"a", b"b\n", b"\n", b"  \n", b"c"], 2), ([b"\n\n"], 0),
    ([b"x" * 10, b"\n" + b"y" * 10], 2),
])
def test_the_line_count_is_of_non_blank_lines_across_chunks(chunks: list[bytes], lines: int) -> None:
    counter = LineCounter()
    for chunk in chunks:
        counter.feed(chunk)
    assert counter.finish() == lines
