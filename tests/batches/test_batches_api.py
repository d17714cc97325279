"""The Files and Batch APIs through the official openai client (in process, fake gateway behind)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from batch_support import Api, eventually, jsonl, parse_jsonl, request_line
from openai.types import Batch
from openai.types.chat import ChatCompletion

TERMINAL = {"completed", "failed", "cancelled", "expired"}


async def upload(api: Api, tmp_path: Path, lines: list[bytes], tenant: str = "alice", name: str = "in.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(jsonl(lines))
    with path.open("rb") as file:
        return (await api.clients[tenant].files.create(file=file, purpose="batch")).id


async def finished(client: openai.AsyncOpenAI, batch_id: str) -> Batch:
    async def done() -> Batch | None:
        batch = await client.batches.retrieve(batch_id)
        return batch if batch.status in TERMINAL else None

    return await eventually(done, what=f"{batch_id} to finish")


async def test_upload_run_and_download_with_the_official_client(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    lines = [request_line(f"q-{i}", content=f"question {i}") for i in range(25)]
    path = tmp_path / "questions.jsonl"
    path.write_bytes(jsonl(lines))
    with path.open("rb") as file:
        uploaded = await alice.files.create(file=file, purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.status) == ("file", "batch", "processed")
    assert uploaded.bytes == path.stat().st_size and uploaded.filename == "questions.jsonl"
    assert (await alice.files.content(uploaded.id)).content == path.read_bytes()

    created = await alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                         completion_window="24h", metadata={"team": "search"})
    assert created.status == "validating" and created.metadata == {"team": "search"}
    assert created.expires_at == created.created_at + 86_400

    batch = await finished(alice, created.id)
    assert batch.status == "completed" and batch.error_file_id is None
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (25, 25, 0)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.output_file_id is not None
    output_file = await alice.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output"
    results = parse_jsonl((await alice.files.content(batch.output_file_id)).content)
    assert sorted(r["custom_id"] for r in results) == sorted(f"q-{i}" for i in range(25))
    for result in results:
        completion = ChatCompletion.model_validate(result["response"]["body"])
        number = result["custom_id"].removeprefix("q-")
        assert completion.choices[0].message.content == f"echo: question {number}"
    assert api.gateway.priorities == {"batch"}


async def test_list_pages_newest_first_with_after_and_limit(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    file_id = await upload(api, tmp_path, [request_line("only")])
    ids = []
    for _ in range(5):
        ids.append((await alice.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                               completion_window="24h")).id)
        await asyncio.sleep(0.002)  # distinct created_at; equal ones are ordered by id
    first = await alice.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    raw = (await api.http["alice"].get("/v1/batches", params={"limit": 2, "after": ids[3]})).json()
    assert [b["id"] for b in raw["data"]] == [ids[2], ids[1]]
    assert (raw["object"], raw["first_id"], raw["last_id"], raw["has_more"]) == ("list", ids[2], ids[1], True)
    assert [b.id async for b in alice.batches.list(limit=2)] == ids[::-1]  # the client's auto-paging
    last = (await api.http["alice"].get("/v1/batches", params={"after": ids[0]})).json()
    assert last["data"] == [] and last["has_more"] is False


async def test_cancel_stops_sending_and_keeps_what_finished(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    api.gateway.gate = asyncio.Event()  # the deployment answers nothing for now
    file_id = await upload(api, tmp_path, [request_line(f"c-{i}") for i in range(12)])
    created = await alice.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    await eventually(lambda: api.gateway.in_flight > 0, what="requests in flight")
    cancelling = await alice.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None

    batch = await finished(alice, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.error_file_id is not None and batch.output_file_id is None
    errors = parse_jsonl((await alice.files.content(batch.error_file_id)).content)
    assert sorted(e["custom_id"] for e in errors) == sorted(f"c-{i}" for i in range(12))
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    again = await alice.batches.cancel(created.id)  # harmless
    assert again.status == "cancelled"
    api.gateway.gate.set()
    done = await finished(alice, (await alice.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")).id)
    with pytest.raises(openai.ConflictError, match="completed"):  # nothing left to cancel
        await alice.batches.cancel(done.id)


async def test_a_malformed_file_fails_the_batch_with_per_line_errors(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    file_id = await upload(api, tmp_path, [
        request_line("a"), b'{"custom_id": "b", "method": "POST"', request_line("a"),
        request_line("c", url="/v1/completions"), request_line("d", model="not-mine")])
    created = await alice.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    batch = await finished(alice, created.id)
    assert batch.status == "failed" and batch.failed_at is not None and batch.errors is not None
    assert [(e.code, e.line) for e in batch.errors.data or []] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3), ("invalid_url", 4), ("model_not_found", 5)]
    assert api.gateway.calls == []


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"endpoint": "/v1/moderations"}, 400, "endpoint"),
    ({"completion_window": "48h"}, 400, "completion_window"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata"),
    ({"metadata": {"k": "v" * 513}}, 400, "metadata"),
    ({"input_file_id": "file-missing"}, 404, "input_file_id"),
])
async def test_a_bad_create_request_is_refused_clearly(api: Api, tmp_path: Path, body: dict[str, object],
                                                       status: int, param: str) -> None:
    file_id = await upload(api, tmp_path, [request_line("a")])
    request = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"} | body
    response = await api.http["alice"].post("/v1/batches", json=request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]
    assert (await api.http["alice"].get("/v1/batches")).json()["data"] == []


async def test_another_tenant_cannot_see_read_use_cancel_or_delete(api: Api, tmp_path: Path) -> None:
    alice, bob = api.clients["alice"], api.clients["bob"]
    api.gateway.gate = asyncio.Event()
    file_id = await upload(api, tmp_path, [request_line("secret")])
    batch = await alice.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                       completion_window="24h")
    for attempt in (bob.files.retrieve(file_id), bob.files.content(file_id), bob.files.delete(file_id),
                    bob.batches.retrieve(batch.id), bob.batches.cancel(batch.id),
                    bob.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                       completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            await attempt
    assert [f.id async for f in bob.files.list()] == []
    assert [b.id async for b in bob.batches.list()] == []
    assert (await alice.batches.retrieve(batch.id)).status in ("validating", "in_progress")
    assert (await alice.files.retrieve(file_id)).id == file_id


async def test_files_list_get_delete_and_the_unprefixed_routes(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    first = await upload(api, tmp_path, [request_line("a")], name="one.jsonl")
    second = await upload(api, tmp_path, [request_line("b")], name="two.jsonl")
    assert [f.id async for f in alice.files.list()] == [second, first]
    created = await alice.batches.create(input_file_id=first, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    batch = await finished(alice, created.id)
    assert [f.id async for f in alice.files.list(purpose="batch_output")] == [batch.output_file_id]
    assert {f.id async for f in alice.files.list(purpose="batch")} == {first, second}

    plain = api.http["alice"]
    assert (await plain.get(f"/files/{second}")).json()["filename"] == "two.jsonl"
    assert (await plain.get(f"/files/{second}/content")).content == jsonl([request_line("b")])
    assert (await plain.get(f"/batches/{batch.id}")).json()["status"] == "completed"
    assert [b["id"] for b in (await plain.get("/batches")).json()["data"]] == [batch.id]

    deleted = await alice.files.delete(second)
    assert (deleted.id, deleted.deleted, deleted.object) == (second, True, "file")
    with pytest.raises(openai.NotFoundError):
        await alice.files.content(second)
    assert [f.id async for f in alice.files.list(purpose="batch")] == [first]


async def test_the_input_of_a_running_batch_cannot_be_deleted(api: Api, tmp_path: Path) -> None:
    alice = api.clients["alice"]
    api.gateway.gate = asyncio.Event()
    file_id = await upload(api, tmp_path, [request_line("a")])
    created = await alice.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    with pytest.raises(openai.ConflictError, match=created.id):
        await alice.files.delete(file_id)
    api.gateway.gate.set()
    await finished(alice, created.id)
    assert (await alice.files.delete(file_id)).deleted


async def test_an_upload_breaking_a_limit_or_the_form_stores_nothing(api: Api, tmp_path: Path) -> None:
    http = api.http["alice"]
    many = b"\n".join(b'{"custom_id": "%d"}' % i for i in range(50_001))
    response = await http.post("/v1/files", files={"file": ("many.jsonl", many)}, data={"purpose": "batch"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_lines"
    wrong = await http.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "purpose"
    no_file = await http.post("/v1/files", files={"other": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    not_form = await http.post("/v1/files", json={"purpose": "batch"})
    assert not_form.status_code == 400 and "multipart/form-data" in not_form.json()["error"]["message"]
    assert (await http.get("/v1/files")).json()["data"] == []
    stored = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert stored == []
