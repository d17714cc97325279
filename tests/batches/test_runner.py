"""The durable runner with a fake gateway: results, retries, validation, cancel, expiry, crash and resume."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from batch_support import (
    FakeGateway,
    eventually,
    jsonl,
    make_batch,
    make_runner,
    read_file,
    request_line,
)

from inferstack.batches import repository as repo
from inferstack.batches.tables import BatchRow
from inferstack.clock import ManualClock
from inferstack.files import repository as file_repo
from inferstack.files.blobs import LocalBlobStore
from inferstack.store import Store


def batch(store: Store, batch_id: str, tenant: str = "alice") -> BatchRow:
    row = repo.get_batch(store, tenant, batch_id)
    assert row is not None
    return row


def custom_ids(*files: list[dict[str, Any]]) -> Counter[str]:
    return Counter(item["custom_id"] for lines in files for item in lines)


def hold_after(gateway: FakeGateway, answered: int) -> asyncio.Event:
    """Let the first `answered` requests through, then hold every other one until the gate opens."""
    gate = asyncio.Event()
    original = gateway.call
    count = 0

    async def call(tenant_id: str, path: str, body: dict[str, Any], *, priority: str = "batch") -> tuple[int, bytes]:
        nonlocal count
        count += 1
        if count > answered:
            await gate.wait()
        return await original(tenant_id, path, body, priority=priority)

    gateway.call = call  # type: ignore[method-assign]
    return gate


async def test_a_batch_completes_with_every_custom_id_once_as_real_chat_completions(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    lines = [request_line(f"req-{i}") for i in range(60)]
    batch_id = await make_batch(store, blobs, jsonl(lines[:30]) + b"\n\n" + jsonl(lines[30:]))
    await make_runner(store, blobs, gateway, concurrency=4).drive(batch_id)

    row = batch(store, batch_id)
    assert row.status == "completed" and (row.total, row.completed, row.failed) == (60, 60, 0)
    assert row.in_progress_at and row.finalizing_at and row.completed_at and row.error_file_id is None
    output = read_file(store, blobs, "alice", row.output_file_id)
    assert custom_ids(output) == Counter(f"req-{i}" for i in range(60))
    for item in output:
        assert item["id"].startswith("batch_req_") and item["error"] is None
        response = item["response"]
        assert response["status_code"] == 200 and response["request_id"]
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["choices"][0]["message"]["content"] == f"echo: {item['custom_id']}"
    assert gateway.peak_in_flight <= 4 and gateway.priorities == {"batch"}
    output_file = file_repo.get_file(store, "alice", row.output_file_id or "")
    assert output_file is not None and output_file.purpose == "batch_output" and output_file.lines == 60


async def test_transient_failures_are_retried_and_final_ones_go_to_the_error_file(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    attempts: Counter[str] = Counter()

    def script(body: dict[str, Any]) -> int:
        name = body["messages"][-1]["content"]
        attempts[name] += 1
        if name.startswith("flaky"):
            return 503 if attempts[name] == 1 else 200
        if name.startswith("throttled"):
            return 429 if attempts[name] <= 2 else 200
        if name.startswith("down"):
            return 503
        return 400 if name.startswith("bad") else 200

    gateway.script = script
    names = ["ok-1", "flaky-1", "throttled-1", "down-1", "bad-1", "ok-2"]
    batch_id = await make_batch(store, blobs, jsonl([request_line(n) for n in names]))
    await make_runner(store, blobs, gateway).drive(batch_id)  # 3 attempts per line

    row = batch(store, batch_id)
    assert row.status == "completed" and (row.completed, row.failed) == (4, 2)
    output = read_file(store, blobs, "alice", row.output_file_id)
    errors = read_file(store, blobs, "alice", row.error_file_id)
    assert custom_ids(output) == Counter(["ok-1", "flaky-1", "throttled-1", "ok-2"])
    assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {"down-1": 503, "bad-1": 400}
    assert all(e["error"] is None and "error" in e["response"]["body"] for e in errors)
    assert attempts["down-1"] == 3 and attempts["bad-1"] == 1 and attempts["throttled-1"] == 3


async def test_an_invalid_file_fails_with_per_line_errors_and_sends_nothing(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    data = jsonl([request_line("a"), b"{not json", request_line("a"), request_line("b", url="/v1/embeddings"),
                  request_line("c", model="someone-elses"), request_line("d")])
    batch_id = await make_batch(store, blobs, data)
    await make_runner(store, blobs, gateway).drive(batch_id)

    row = batch(store, batch_id)
    assert row.status == "failed" and row.failed_at is not None and row.in_progress_at is None
    assert [(e["code"], e["line"], e["param"]) for e in row.errors or []] == [
        ("invalid_json_line", 2, None), ("duplicate_custom_id", 3, "custom_id"), ("invalid_url", 4, "url"),
        ("model_not_found", 5, "body.model")]
    assert gateway.calls == [] and row.output_file_id is None and row.error_file_id is None


async def test_a_killed_runner_resumes_elsewhere_and_every_custom_id_appears_once(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    clock = ManualClock()
    names = [f"line-{i}" for i in range(200)]
    batch_id = await make_batch(store, blobs, jsonl([request_line(n) for n in names]), now=clock.now())
    hold_after(gateway, answered=120)
    first = make_runner(store, blobs, gateway, clock, concurrency=8, lease_s=30)
    crashed = asyncio.create_task(first.drive(batch_id))
    await eventually(lambda: batch(store, batch_id).completed >= 100, what="a checkpoint of 100 lines")
    crashed.cancel()  # no clean shutdown: the lease stays, uncommitted answers are lost
    await asyncio.gather(crashed, return_exceptions=True)
    checkpointed = {r[2] for r in repo.results_after(store, batch_id, 0, 1000)}
    done_before = batch(store, batch_id).completed
    sent_before = len(gateway.calls)

    gateway2 = FakeGateway(models=gateway.models)
    second = make_runner(store, blobs, gateway2, clock, concurrency=8, lease_s=30)
    await second.drive(batch_id)
    assert batch(store, batch_id).status == "in_progress", "taken over while the first runner's lease was live"
    clock.advance(31)
    await second.drive(batch_id)

    row = batch(store, batch_id)
    assert row.status == "completed" and (row.completed, row.failed) == (200, 0)
    output = read_file(store, blobs, "alice", row.output_file_id)
    assert custom_ids(output) == Counter(names)  # each exactly once
    assert len(gateway2.calls) == 200 - done_before  # only the lines without a stored result
    assert len(checkpointed) == done_before and sent_before >= done_before


async def test_cancel_keeps_the_results_so_far_and_marks_the_rest_cancelled(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    names = [f"c-{i}" for i in range(40)]
    batch_id = await make_batch(store, blobs, jsonl([request_line(n) for n in names]))
    hold_after(gateway, answered=10)
    runner = make_runner(store, blobs, gateway)
    driving = asyncio.create_task(runner.drive(batch_id))
    await eventually(lambda: batch(store, batch_id).completed == 10, what="10 answered lines")
    cancelling = repo.request_cancel(store, "alice", batch_id, time.time())
    assert cancelling is not None and cancelling.status == "cancelling"
    runner.kick()
    await asyncio.wait_for(driving, 10)

    row = batch(store, batch_id)
    assert row.status == "cancelled" and row.cancelling_at and row.cancelled_at
    assert (row.total, row.completed, row.failed) == (40, 10, 30)
    output = read_file(store, blobs, "alice", row.output_file_id)
    errors = read_file(store, blobs, "alice", row.error_file_id)
    assert len(output) == 10 and custom_ids(output, errors) == Counter(names)
    assert {(e["response"], e["error"]["code"]) for e in errors} == {(None, "batch_cancelled")}


async def test_cancel_before_validation_ends_cancelled_without_files(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    batch_id = await make_batch(store, blobs, jsonl([request_line("a")]))
    repo.request_cancel(store, "alice", batch_id, time.time())
    await make_runner(store, blobs, gateway).drive(batch_id)
    row = batch(store, batch_id)
    assert row.status == "cancelled" and row.output_file_id is None and row.error_file_id is None
    assert gateway.calls == []


async def test_a_batch_past_its_24h_window_expires_and_unfinished_lines_say_so(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    clock = ManualClock()
    names = [f"e-{i}" for i in range(30)]
    batch_id = await make_batch(store, blobs, jsonl([request_line(n) for n in names]), now=clock.now())
    hold_after(gateway, answered=5)  # the deployment stops answering
    runner = make_runner(store, blobs, gateway, clock, check_s=60, lease_s=600)
    driving = asyncio.create_task(runner.drive(batch_id))
    await eventually(lambda: batch(store, batch_id).completed == 5, what="5 answered lines")
    clock.advance(23 * 3600)
    # The runner checked at 23 h (its lease renewal shows it) and kept going.
    await eventually(lambda: batch(store, batch_id).lease_until == clock.now() + 600, what="a check at 23 h")
    assert batch(store, batch_id).status == "in_progress"
    clock.advance(3600)  # 24 h after creation
    await asyncio.wait_for(driving, 10)

    row = batch(store, batch_id)
    assert row.status == "expired" and row.expired_at == clock.now() and (row.completed, row.failed) == (5, 25)
    errors = read_file(store, blobs, "alice", row.error_file_id)
    output = read_file(store, blobs, "alice", row.output_file_id)
    assert custom_ids(output, errors) == Counter(names)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


async def test_a_second_runner_does_not_touch_a_batch_another_holds(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    batch_id = await make_batch(store, blobs, jsonl([request_line("a")]))
    assert repo.claim(store, batch_id, "other-instance", time.time(), lease_s=3600) is not None
    await make_runner(store, blobs, gateway).drive(batch_id)
    assert batch(store, batch_id).status == "validating" and gateway.calls == []


async def test_start_resumes_unfinished_batches_and_runs_new_ones_sharing_the_concurrency(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    gateway.delay_s = 0.002
    first = await make_batch(store, blobs, jsonl([request_line(f"a-{i}") for i in range(40)]))
    runner = make_runner(store, blobs, gateway, concurrency=3, poll_s=3600)
    await runner.start()
    try:
        second = await make_batch(store, blobs, jsonl([request_line(f"b-{i}") for i in range(40)]))
        runner.kick()
        for batch_id in (first, second):
            await eventually(lambda b=batch_id: batch(store, b).status == "completed", what=f"{batch_id} completed")
    finally:
        await runner.stop()
    assert gateway.peak_in_flight <= 3 and len(gateway.calls) == 80


async def test_an_input_file_whose_content_vanished_fails_the_batch_clearly(
        store: Store, blobs: LocalBlobStore, gateway: FakeGateway) -> None:
    batch_id = await make_batch(store, blobs, jsonl([request_line("a")]))
    source = file_repo.get_file(store, "alice", batch(store, batch_id).input_file_id)
    assert source is not None
    blobs.delete(source.blob_key)
    await make_runner(store, blobs, gateway).drive(batch_id)
    row = batch(store, batch_id)
    assert row.status == "failed" and [e["code"] for e in row.errors or []] == ["invalid_file"]
