"""The durable batch runner: validate, send every line through the gateway, checkpoint, finish.

Per batch, the runner loops load -> decide (`transitions.next_step`) -> act, so what it does next is
decided from durable facts alone and a control plane killed at any point resumes where it stopped:

- validate: stream the input file once through `FileCheck`; nothing is sent unless every line is
  valid. -> in_progress (with the request total) or failed (with per-line errors).
- run: stream the file again, skipping lines that already have a result, and send the others
  through the gateway at batch priority, at most `concurrency` at a time across all batches.
  Finished lines gather in memory and are committed together (group commit) with the request
  counts; a crash loses only uncommitted answers, which are simply asked for again, so every
  custom_id has exactly one result. The same loop notices a cancel or the 24 h deadline.
- finish (complete, cancel, expire): merge the input file with the stored results in line order
  into the output and error files; lines without a result get batch_cancelled / batch_expired.
  The files appear and the status turns terminal in one transaction, so a crash mid-way just
  writes the files again.

Each batch is leased to one runner (renewed at every checkpoint, at least every `check_s`), so several
control planes on one database never run a batch twice, and a crashed one's batches are taken over
when its lease lapses: with the defaults a restarted control plane resumes within ~12 s (a 10 s
lease plus a 2 s poll). A runner whose lease lapsed anyway (a stall longer than the lease) finds out
at its next checkpoint, which then writes nothing, so results are never doubled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from inferstack.batches import repository as repo
from inferstack.batches.results import error_line, is_success, is_transient, response_line
from inferstack.batches.tables import BatchRow
from inferstack.batches.transitions import FINISHES, UNFINISHED_MESSAGES, BatchStatus, Step, next_step
from inferstack.batches.validation import FileCheck, LineError, is_blank
from inferstack.clock import Clock
from inferstack.db import Database
from inferstack.files import repository as file_repo
from inferstack.files.blobs import AsyncBlobWriter, BlobNotFound, BlobStore, aiter_lines
from inferstack.files.tables import FileRow

log = logging.getLogger(__name__)

T = TypeVar("T")
PAGE = 500  # rows read per query while resuming or finishing: ~0.5 MB of result lines


class RequestSender(Protocol):
    """What the runner needs from the gateway (`inferstack.gateway.entry.Gateway` is one)."""

    async def call(self, tenant_id: str, path: str, body: dict[str, Any], *,
                   priority: str = "batch") -> tuple[int, bytes]:
        """Send one request as the gateway would; errors come back as (status, OpenAI error body)."""
        ...

    def resolves(self, tenant_id: str, model: str) -> bool:
        """Whether `model` names one of the tenant's deployments."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures (429, 5xx) are retried with exponential backoff: with the defaults the
    waits are 1, 2, 4, 8, 16 s, so a line gives up after 6 attempts and ~31 s."""

    attempts: int = 6
    base_s: float = 1.0
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.base_s * 2 ** (attempt - 1))


def output_key(batch_id: str) -> str:
    return f"batches/{batch_id}/output.jsonl"


def error_key(batch_id: str) -> str:
    return f"batches/{batch_id}/errors.jsonl"


async def _paged(fetch: Callable[[int, int], list[T]], key: Callable[[T], int]) -> AsyncIterator[T]:
    """Items of a keyset-paged query, one page in memory, each page read in a thread."""
    after = 0
    while True:
        page = await asyncio.to_thread(fetch, after, PAGE)
        for item in page:
            yield item
        if len(page) < PAGE:
            return
        after = key(page[-1])


class _Unsaved:
    """One running batch's answers on their way from the gateway to the next checkpoint.

    `room` bounds the lines started but not yet checkpointed: when the database is slower than the
    replicas, sending waits instead of answers piling up in memory."""

    def __init__(self, wake: asyncio.Event, max_unsaved: int) -> None:
        self.wake = wake
        self.room = asyncio.Semaphore(max_unsaved)
        self.results: list[tuple[int, bool, bytes]] = []
        self.in_flight: set[asyncio.Task[None]] = set()

    def add(self, result: tuple[int, bool, bytes]) -> None:
        self.results.append(result)
        self.wake.set()

    def take(self) -> list[tuple[int, bool, bytes]]:
        taken, self.results = self.results, []
        return taken

    def saved(self, count: int) -> None:
        for _ in range(count):
            self.room.release()


class BatchRunner:
    def __init__(self, database: Database, blobs: BlobStore, sender: RequestSender, clock: Clock, *,
                 concurrency: int = 16, poll_s: float = 2.0, check_s: float = 1.0, lease_s: float = 10.0,
                 retry: RetryPolicy | None = None, owner: str | None = None, max_unsaved: int = 1000) -> None:
        self._db = database
        self._blobs = blobs
        self._sender = sender
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)  # requests in flight, across all batches
        self._poll_s = poll_s
        self._check_s = check_s
        self._lease_s = lease_s
        self._retry = retry or RetryPolicy()
        self._max_unsaved = max_unsaved  # per batch: ~1 MB of answers awaiting their checkpoint
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._pokes: dict[str, asyncio.Event] = {}  # running batches' loops, woken by kick()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every batch left unfinished by a previous run, then keep looking for new ones."""
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        tasks = [t for t in (self._supervisor, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = None
        await asyncio.to_thread(repo.release_all, self._db, self.owner)

    def kick(self) -> None:
        """Something changed (a batch was created or cancelled): look now rather than at the next poll."""
        self._wake.set()
        for poke in self._pokes.values():
            poke.set()

    async def _supervise(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("looking for batches to run failed; trying again in %.0f s", self._poll_s)
            sleeper = asyncio.ensure_future(self._clock.sleep(self._poll_s))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
            self._wake.clear()

    async def poll(self) -> None:
        """Start a task for every runnable batch that has none."""
        ids = await asyncio.to_thread(repo.runnable_batch_ids, self._db, self.owner, self._clock.now())
        for batch_id in ids:
            if batch_id not in self._tasks:
                self._tasks[batch_id] = asyncio.create_task(self._guarded(batch_id))

    async def _guarded(self, batch_id: str) -> None:
        try:
            await self.drive(batch_id)
        except Exception:
            # The batch keeps its checkpoint; the next poll resumes it.
            log.exception("batch %s stopped on an error; it resumes at the next poll", batch_id)
        finally:
            self._tasks.pop(batch_id, None)

    # --- one batch ----------------------------------------------------------------------------
    async def drive(self, batch_id: str) -> None:
        """Take a batch through its steps until it is finished or another runner holds it."""
        while True:
            row = await asyncio.to_thread(repo.claim, self._db, batch_id, self.owner,
                                          self._clock.now(), self._lease_s)
            if row is None:
                return
            step = next_step(BatchStatus(row.status), row.expires_at, self._clock.now())
            if step is Step.validate:
                await self._validate(row)
            elif step is Step.run:
                await self._run(row)
            elif step in FINISHES:
                await self._finish(row, step)
            else:
                return

    async def _input(self, row: BatchRow) -> FileRow | None:
        return await asyncio.to_thread(file_repo.get_file, self._db, row.tenant_id, row.input_file_id)

    async def _validate(self, row: BatchRow) -> None:
        check = FileCheck(row.endpoint, lambda model: self._sender.resolves(row.tenant_id, model))
        source = await self._input(row)
        try:
            if source is None:
                raise BlobNotFound(row.input_file_id)
            line = 0
            async for raw in aiter_lines(self._blobs, source.blob_key):
                line += 1
                check.feed(raw, line)
            errors = check.finish()
        except BlobNotFound:  # e.g. removed from the bucket behind our back: fail rather than retry forever
            errors = [LineError("invalid_file", None, f"The content of input file {row.input_file_id} is gone.")]
        if errors:
            await asyncio.to_thread(repo.advance, self._db, row.id, self.owner, BatchStatus.validating,
                                    BatchStatus.failed, self._clock.now(), errors=[e.as_dict() for e in errors])
        else:
            await asyncio.to_thread(repo.advance, self._db, row.id, self.owner, BatchStatus.validating,
                                    BatchStatus.in_progress, self._clock.now(), total=check.requests)

    async def _run(self, row: BatchRow) -> None:
        source = await self._input(row)
        if source is None:  # deleting a file an active batch reads is refused; this is a safety net
            raise RuntimeError(f"batch {row.id}: input file {row.input_file_id} is gone")
        run = _Unsaved(asyncio.Event(), self._max_unsaved)
        self._pokes[row.id] = run.wake
        producer = asyncio.create_task(self._produce(row, source, run))
        producer.add_done_callback(lambda _: run.wake.set())
        ticker = asyncio.create_task(self._tick(run.wake))
        stopped = False
        try:
            while True:
                await run.wake.wait()
                run.wake.clear()
                produced_all = producer.done()  # before taking results: then none can follow
                taken = run.take()
                fresh = await asyncio.to_thread(repo.save_results, self._db, row.id, self.owner, taken,
                                                self._clock.now(), self._lease_s)
                if fresh is None:
                    log.warning("batch %s: lease lost to another runner; leaving it", row.id)
                    return
                run.saved(len(taken))
                if fresh.status != BatchStatus.in_progress or self._clock.now() >= fresh.expires_at:
                    stopped = True  # cancelled or expired: drive() finishes it with what it has
                    break
                if produced_all:
                    producer.result()  # re-raises what stopped the producer, if anything did
                    break
        finally:
            self._pokes.pop(row.id, None)
            for task in (ticker, producer, *run.in_flight):
                task.cancel()
            await asyncio.gather(ticker, producer, *run.in_flight, return_exceptions=True)
        if stopped:
            # Lines that finished while the others were being stopped are results too: keep them.
            await asyncio.to_thread(repo.save_results, self._db, row.id, self.owner, run.take(),
                                    self._clock.now(), self._lease_s)
            return
        await asyncio.to_thread(repo.advance, self._db, row.id, self.owner, BatchStatus.in_progress,
                                BatchStatus.finalizing, self._clock.now())

    async def _tick(self, wake: asyncio.Event) -> None:
        # Wakes the run loop when nothing else does (every line waiting on a waking deployment), so
        # the lease is renewed and a cancel or the deadline is noticed within `check_s`.
        while True:
            await self._clock.sleep(self._check_s)
            wake.set()

    async def _produce(self, row: BatchRow, source: FileRow, run: _Unsaved) -> None:
        done = _paged(lambda after, limit: repo.done_lines_after(self._db, row.id, after, limit),
                      lambda line: line)
        next_done = await anext(done, None)
        line = 0
        async for raw in aiter_lines(self._blobs, source.blob_key):
            line += 1
            while next_done is not None and next_done < line:
                next_done = await anext(done, None)
            if next_done == line or is_blank(raw):
                continue
            await run.room.acquire()
            await self._slots.acquire()
            task = asyncio.create_task(self._send(row, line, raw, run))
            run.in_flight.add(task)
            task.add_done_callback(run.in_flight.discard)
            # Released by a callback, not in the coroutine: a task cancelled before it ever ran
            # never enters its own `finally`.
            task.add_done_callback(lambda _: self._slots.release())
        await asyncio.gather(*run.in_flight)

    async def _send(self, row: BatchRow, line: int, raw: bytes, run: _Unsaved) -> None:
        item = orjson.loads(raw)  # validated already
        attempt = 1
        status, body = await self._sender.call(row.tenant_id, row.endpoint, item["body"], priority="batch")
        while is_transient(status) and attempt < self._retry.attempts:
            await self._clock.sleep(self._retry.delay(attempt))
            attempt += 1
            status, body = await self._sender.call(row.tenant_id, row.endpoint, item["body"], priority="batch")
        run.add((line, is_success(status), response_line(item["custom_id"], status, body)))

    async def _finish(self, row: BatchRow, step: Step) -> None:
        current, target, unfinished_code = FINISHES[step]
        output: FileRow | None = None
        errors: FileRow | None = None
        unfinished = 0
        source = await self._input(row)
        if row.in_progress_at is not None and source is not None:  # else no line ever ran
            output, errors, unfinished = await self._write_results(row, source, unfinished_code)
        await asyncio.to_thread(repo.finish, self._db, row.id, self.owner, current, target,
                                self._clock.now(), output, errors, unfinished)

    async def _write_results(self, row: BatchRow, source: FileRow,
                             unfinished_code: str | None) -> tuple[FileRow | None, FileRow | None, int]:
        """Merge the input file with the stored results, in line order, into the two result files."""
        results = _paged(lambda after, limit: repo.results_after(self._db, row.id, after, limit),
                         lambda result: result[0])
        result = await anext(results, None)
        writers = {True: AsyncBlobWriter(self._blobs, output_key(row.id)),
                   False: AsyncBlobWriter(self._blobs, error_key(row.id))}
        counts = {True: 0, False: 0}
        unfinished = 0
        try:
            line = 0
            async for raw in aiter_lines(self._blobs, source.blob_key):
                line += 1
                if is_blank(raw):
                    continue
                if result is not None and result[0] == line:
                    _, ok, data = result
                    result = await anext(results, None)
                elif unfinished_code is None:
                    raise RuntimeError(f"batch {row.id}: line {line} has no result at completion")
                else:
                    ok = False
                    data = error_line(orjson.loads(raw)["custom_id"], unfinished_code,
                                      UNFINISHED_MESSAGES[unfinished_code])
                    unfinished += 1
                await writers[ok].write(data)
                counts[ok] += 1
            files = {}
            for ok, writer in writers.items():
                if counts[ok]:
                    size = await writer.commit()
                    files[ok] = FileRow(
                        id=file_repo.new_file_id(), tenant_id=row.tenant_id, purpose="batch_output", bytes=size,
                        filename=f"{row.id}_{'output' if ok else 'error'}.jsonl", lines=counts[ok],
                        blob_key=output_key(row.id) if ok else error_key(row.id), created_at=self._clock.now())
                else:
                    await writer.abort()
        finally:
            for writer in writers.values():
                await writer.abort()  # a no-op for the committed ones
        return files.get(True), files.get(False), unfinished
