"""Batch runner benchmark: throughput as a fraction of what the replicas can serve, and peak memory.

    .venv/bin/python bench/batch.py [--lines 50000] [--replicas 2] [--ttft-ms 10] [--max-concurrency 8]

Runs, on this machine: `--replicas` sim replicas (each answers a request in `--ttft-ms` with instant
tokens and runs at most `--max-concurrency` at once, like vLLM's max_num_seqs), then

1. capacity: what the replicas serve when saturated directly (no gateway), in requests/sec;
2. a batch of `--lines` chat requests through the production BatchRunner and Gateway (batch priority,
   the gateway's batch slots per replica, the runner's default concurrency), over a real SQLite store
   and blob directory: lines/sec while in_progress, as a fraction of (1), and the process's peak RSS
   growth during the batch;
3. the runner's peak Python heap (tracemalloc), alone (an in-process sender that answers at once, so
   no gateway metrics or HTTP buffers are counted), for a file a tenth the size and the full file. The
   runner streams the file and pages the results, so what grows with the file is only validation's
   duplicate check: a 16-byte digest and a line number per custom_id, ~6 MB at 50,000 lines.

The default `--max-concurrency` equals the gateway's batch slots per replica, so a batch may use all of
a replica; with more sequences per replica the gateway keeps the rest for interactive traffic and the
fraction drops accordingly (by design). Figures come from one run on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import psutil

from inferstack.auth import KeyRing
from inferstack.batches import repository as repo
from inferstack.batches.runner import BatchRunner
from inferstack.batches.tables import BatchRow
from inferstack.clock import SystemClock
from inferstack.db import add
from inferstack.files import repository as file_repo
from inferstack.files.blobs import LocalBlobStore, write_stream
from inferstack.files.tables import FileRow
from inferstack.gateway.admission import BATCH_SLOTS_PER_REPLICA
from inferstack.gateway.entry import Gateway
from inferstack.server import open_database

sys.path.insert(0, str(Path(__file__).parent))
from harness import REPLICA_KEY, AlwaysAwake, bench_fleet, start_sim_replicas

CHAT = "/v1/chat/completions"


def body(i: int) -> dict[str, object]:
    return {"model": "bench", "max_tokens": 4, "messages": [{"role": "user", "content": f"question {i}"}]}


async def capacity(urls: list[str], concurrency: int, seconds: float) -> float:
    """Requests/sec the replicas answer when each is kept full, sent straight to them."""
    headers = {"Authorization": f"Bearer {REPLICA_KEY}", "Content-Type": "application/json"}
    payload = orjson.dumps(body(0))
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, url: str) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.post(url + CHAT, data=payload, headers=headers) as response:
                await response.read()
                assert response.status == 200
                done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        # Twice the replica's sequences per replica: every slot is always busy, the rest queue.
        await asyncio.gather(*(worker(session, url) for url in urls for _ in range(2 * concurrency)))
        return done / (time.perf_counter() - started)


class InstantSender:
    """Answers every line at once with a fixed chat completion: the runner measured on its own."""

    answer = orjson.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
                           "choices": [{"index": 0, "finish_reason": "length",
                                        "message": {"role": "assistant", "content": "the quick model sends"}}],
                           "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}})

    async def call(self, tenant_id: str, path: str, body: dict[str, object], *,
                   priority: str = "batch") -> tuple[int, bytes]:
        await asyncio.sleep(0)
        return 200, self.answer

    def resolves(self, tenant_id: str, model: str) -> bool:
        return True


class Harness:
    """The production runner and gateway in this process, over a temporary store and blob directory."""

    def __init__(self, root: Path, urls: list[str]) -> None:
        self.store = open_database(f"sqlite:///{root / 'bench.db'}")
        self.tenant, _ = self.store.create_key("bench", time.time())
        self.blobs = LocalBlobStore(root / "blobs")
        fleet = bench_fleet(self.tenant, urls)
        self.gateway = Gateway(fleet, KeyRing(self.store, SystemClock()), AlwaysAwake(), SystemClock())
        self.runner = BatchRunner(self.store, self.blobs, self.gateway, SystemClock())

    async def new_batch(self, lines: int) -> str:
        async def content() -> AsyncIterator[bytes]:
            for start in range(0, lines, 1000):
                yield b"".join(orjson.dumps({"custom_id": f"req-{i}", "method": "POST", "url": CHAT,
                                             "body": body(i)}) + b"\n" for i in range(start, min(lines, start + 1000)))

        file_id = file_repo.new_file_id()
        size = await write_stream(self.blobs, f"files/{file_id}", content())
        now = time.time()
        add(self.store, FileRow(id=file_id, tenant_id=self.tenant, filename="bench.jsonl", purpose="batch",
                                bytes=size, lines=lines, blob_key=f"files/{file_id}", created_at=now))
        batch_id = repo.new_batch_id()
        add(self.store, BatchRow(id=batch_id, tenant_id=self.tenant, endpoint=CHAT, input_file_id=file_id,
                                 completion_window="24h", status="validating", created_at=now,
                                 expires_at=now + 86_400, total=0, completed=0, failed=0))
        return batch_id

    async def run(self, batch_id: str) -> dict[str, float]:
        """Drive the batch to the end; times of each phase from watching its status."""
        seen: dict[str, float] = {"validating": time.perf_counter()}

        async def watch() -> None:
            while True:
                row = await asyncio.to_thread(repo.get_batch, self.store, self.tenant, batch_id)
                assert row is not None
                seen.setdefault(row.status, time.perf_counter())
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        await self.runner.drive(batch_id)
        watcher.cancel()
        seen.setdefault("completed", time.perf_counter())
        row = repo.get_batch(self.store, self.tenant, batch_id)
        assert row is not None and row.status == "completed" and row.completed == row.total, row.status
        return seen


class PeakRss:
    """Samples this process's resident memory every 20 ms in a thread (the event loop stays free)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.baseline = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--ttft-ms", type=float, default=10.0)
    parser.add_argument("--max-concurrency", type=int, default=BATCH_SLOTS_PER_REPLICA)
    parser.add_argument("--capacity-seconds", type=float, default=5.0)
    args = parser.parse_args()

    processes, urls = start_sim_replicas(args.replicas, args.ttft_ms, args.max_concurrency)
    try:
        served = await capacity(urls, args.max_concurrency, args.capacity_seconds)
        with tempfile.TemporaryDirectory() as root:
            harness = Harness(Path(root), urls)
            await harness.gateway.start()
            try:
                batch_id = await harness.new_batch(args.lines)
                with PeakRss() as rss:
                    seen = await harness.run(batch_id)
                validating_s = seen.get("in_progress", seen["validating"]) - seen["validating"]
                running_s = seen.get("finalizing", seen["completed"]) - seen.get("in_progress", seen["validating"])
                finalizing_s = seen["completed"] - seen.get("finalizing", seen["completed"])
                rate = args.lines / running_s
                harness.runner = BatchRunner(harness.store, harness.blobs, InstantSender(), SystemClock())
                heap = {}
                for lines in (args.lines // 10, args.lines):
                    batch_id = await harness.new_batch(lines)
                    tracemalloc.start()
                    await harness.run(batch_id)
                    heap[lines] = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
            finally:
                await harness.gateway.close()
    finally:
        for process in processes:
            process.terminate()
            process.wait()

    print(f"replicas: {args.replicas} sim, ttft {args.ttft_ms:g} ms, {args.max_concurrency} sequences each; "
          f"gateway batch slots per replica: {BATCH_SLOTS_PER_REPLICA}")
    print(f"replica capacity (saturated directly):  {served:8.0f} requests/s")
    print(f"batch throughput ({args.lines:,} lines):      {rate:8.0f} lines/s  = {rate / served:.0%} of capacity")
    print(f"  validating {validating_s:.1f} s, in_progress {running_s:.1f} s, finalizing {finalizing_s:.1f} s")
    print(f"peak RSS growth during the batch:       {(rss.peak - rss.baseline) / 2**20:8.1f} MB")
    for lines, peak in heap.items():
        print(f"runner alone, peak Python heap, {lines:>6,} lines: {peak / 2**20:5.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
