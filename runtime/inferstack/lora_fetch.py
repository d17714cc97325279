"""LoRA adapters kept in S3, fetched to where an engine can read them: vLLM reads local directories and
Hugging Face repos only.

The control plane fetches an `s3://bucket/prefix` adapter into a cache under its home before a local
replica starts with it or loads it (`AdapterCache`). The cache is content-addressed: a directory per
bucket, prefix and the objects' ETags, so an adapter changed in S3 is fetched again (into a new directory)
and an unchanged one costs one listing; at start, while no engine runs, only the newest copy of each adapter
is kept (`prune`). A cloud replica cannot read that cache: it fetches its own at
launch with `python -m inferstack fetch-adapters` (`fetch_into`). Every fetch lists the prefix first and
refuses one without `adapter_config.json` (the file vLLM reads first), with a reason that names the
location and never a credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inferstack.lora import S3_SCHEME
from inferstack.s3 import location as s3_location

CONFIG_FILE = "adapter_config.json"


class AdapterUnavailable(Exception):
    """An S3 adapter cannot be read; the message says why (no credential in it) and is shown to users."""


@dataclass(frozen=True)
class AdapterObject:
    key: str
    relative: str
    """Its path inside the adapter's directory."""
    etag: str


@contextmanager
def _s3_errors(source: str) -> Iterator[None]:
    """S3's refusals as `AdapterUnavailable`, each said in words that name no credential."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError:
        raise AdapterUnavailable(f"no AWS credentials to read {source}") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = {"NoSuchBucket": f"bucket {s3_location(source)[0]} does not exist",
                  "AccessDenied": f"access to {source} is denied", "403": f"access to {source} is denied",
                  "InvalidAccessKeyId": "the AWS credentials are not valid",
                  "SignatureDoesNotMatch": "the AWS credentials are not valid"}.get(code, f"S3 refused ({code})")
        raise AdapterUnavailable(reason) from None
    except BotoCoreError as exc:  # endpoint unreachable, timeouts: the class name says enough
        raise AdapterUnavailable(f"S3 could not be reached ({type(exc).__name__})") from None


def list_adapter(client: Any, source: str) -> list[AdapterObject]:
    """The objects under the adapter's prefix; raises `AdapterUnavailable` when there are none, when
    `adapter_config.json` is not among them, or when S3 refuses or cannot be reached."""
    bucket, prefix = s3_location(source)
    folder = f"{prefix}/" if prefix else ""
    with _s3_errors(source):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        listed = [item for page in pages for item in page.get("Contents", [])]
    objects = [AdapterObject(key=item["Key"], relative=item["Key"][len(folder):], etag=item["ETag"].strip('"'))
               for item in listed if not item["Key"].endswith("/")]
    if not objects:
        raise AdapterUnavailable(f"nothing is stored under {source}")
    if CONFIG_FILE not in {o.relative for o in objects}:
        raise AdapterUnavailable(f"{source} holds no {CONFIG_FILE}: not a LoRA adapter directory")
    unsafe = [o.key for o in objects if ".." in PurePosixPath(o.relative).parts]
    if unsafe:
        raise AdapterUnavailable(f"{source} holds a key that would land outside the adapter's directory: {unsafe[0]}")
    return objects


def cache_key(source: str, objects: list[AdapterObject]) -> str:
    """`<where>-<what>`: the same for the same bucket, prefix and object contents (ETags); another when any of
    them changed, with the same `<where>` (so `AdapterCache.prune` can tell the copies of one adapter)."""
    return f"{_digest(s3_location(source))}-{_digest(sorted((o.relative, o.etag) for o in objects))}"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def download(client: Any, source: str, objects: list[AdapterObject], directory: Path) -> None:
    bucket, _ = s3_location(source)
    for item in objects:
        target = directory / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with _s3_errors(source):
            client.download_file(bucket, item.key, str(target))


def fetch_into(client: Any, source: str, directory: Path) -> None:
    """The adapter's files into `directory` (made if missing): what a cloud replica runs before its engine."""
    objects = list_adapter(client, source)
    directory.mkdir(parents=True, exist_ok=True)
    download(client, source, objects, directory)


class AdapterCache:
    """S3 adapters fetched under `root`, for the engines that run on this machine."""

    def __init__(self, root: Path, client: Callable[[], Any]) -> None:
        """`client` makes the S3 client, once, on the first fetch."""
        self._root = root
        self._make_client = client
        self._client: Any = None
        self._lock = threading.Lock()  # fetches run in worker threads; the client is made once

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def check(self, source: str) -> None:
        """Raises `AdapterUnavailable` if `source` is not a readable adapter; downloads nothing."""
        list_adapter(self._s3(), source)

    def fetch(self, source: str) -> Path:
        """The local directory holding the adapter's current files: the cached one when S3 still lists the
        same ETags, else a fresh download. Blocking."""
        client = self._s3()
        objects = list_adapter(client, source)
        target = self._root / cache_key(source, objects)
        if target.is_dir():
            return target
        self._root.mkdir(parents=True, exist_ok=True)
        # Downloaded beside the target and renamed into place: a directory in the cache is always whole.
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self._root))
        try:
            download(client, source, objects, staging)
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another fetch of the same content finished first: keep that one
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def prune(self) -> int:
        """Keep only the newest copy of each adapter: call it while no engine here runs (at start), as an
        older copy may be what a running engine loads from. Returns how many directories went."""
        copies: dict[str, list[Path]] = {}
        for entry in self._root.iterdir() if self._root.is_dir() else []:
            where, dash, _ = entry.name.partition("-")
            copies.setdefault(where if dash and not where.startswith(".") else "", []).append(entry)
        stale = copies.pop("", [])  # a partial download, or a layout of an earlier version
        for entries in copies.values():
            stale += sorted(entries, key=lambda e: e.stat().st_mtime)[:-1]
        for entry in stale:
            shutil.rmtree(entry, ignore_errors=True)
        return len(stale)

    async def engine_source(self, source: str) -> str:
        """What an engine on this machine is given for an adapter's `source`: an S3 one's local directory
        (fetched off the event loop), any other source as it is."""
        if not source.startswith(S3_SCHEME):
            return source
        return str(await asyncio.to_thread(self.fetch, source))

    async def engine_sources(self, sources: list[str]) -> dict[str, str]:
        """`engine_source` of each S3 one among `sources`, by source."""
        s3 = sorted({s for s in sources if s.startswith(S3_SCHEME)})
        return dict(zip(s3, await asyncio.gather(*(self.engine_source(s) for s in s3)), strict=True))
