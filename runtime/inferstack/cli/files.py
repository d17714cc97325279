"""`inferstack files ...` and `inferstack batch ...`: the Files and Batch APIs from the command line.

They talk to the control plane's REST API (INFERSTACK_URL, key in INFERSTACK_API_KEY) with its client.
Uploads and downloads stream with progress bars; a running batch shows a bar of its request counts.
Progress goes to stderr so that `-o json` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table

from inferstack.cli.output import App, Output, OutputOption, control_plane, emit, err, fail, out
from inferstack.client import ControlPlaneClient

files_app = App(help="Files: upload JSONL inputs for batches, list and delete them.", no_args_is_help=True)
batch_app = App(help="Batches: run a JSONL file of requests against a deployment (OpenAI Batch API).",
                        no_args_is_help=True)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def _transfer_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


class _Reading:
    """A binary file that advances a progress bar as httpx streams it (64 KB reads)."""

    def __init__(self, file: BinaryIO, progress: Progress, task: Any) -> None:
        self._file = file
        self._progress = progress
        self._task = task

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._progress.update(self._task, advance=len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self._progress.update(self._task, completed=position)
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:  # lets httpx send a Content-Length rather than a chunked body
        return self._file.fileno()


def _download(client: ControlPlaneClient, file_id: str, target: Path, label: str) -> int:
    """Stream a file's content to `target` with a progress bar; returns the bytes written."""
    size = 0
    try:
        with client.file_content(file_id) as response:
            total = int(response.headers.get("content-length", 0)) or None
            with _transfer_progress() as progress, target.open("wb") as sink:
                task = progress.add_task(label, total=total)
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    size += len(chunk)
                    progress.update(task, advance=len(chunk))
    except httpx.HTTPError as exc:
        fail(f"download of {file_id} failed: {exc}")
    return size


def _when(timestamp: int | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def _files_table(files: list[dict[str, Any]]) -> Table:
    # Ids are copied from these tables: they never wrap.
    table = Table(Column("ID", no_wrap=True), "FILENAME", "PURPOSE", "BYTES", Column("CREATED (UTC)", no_wrap=True))
    for f in files:
        table.add_row(f["id"], f["filename"], f["purpose"], f"{f['bytes']:,}", _when(f["created_at"]))
    return table


def _progress_text(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    done = f"{counts['completed'] + counts['failed']}/{counts['total']}"
    return f"{done} ({counts['failed']} failed)" if counts["failed"] else done


def _batches_table(batches: list[dict[str, Any]]) -> Table:
    table = Table(Column("ID", no_wrap=True), "STATUS", "REQUESTS", "ENDPOINT", Column("CREATED (UTC)", no_wrap=True))
    for b in batches:
        table.add_row(b["id"], b["status"], _progress_text(b), b["endpoint"], _when(b["created_at"]))
    return table


def _batch_detail(batch: dict[str, Any]) -> Table:
    """One batch, one field per row: its progress, timeline, result files and errors."""
    table = Table("FIELD", Column("VALUE", overflow="fold"), show_header=False)
    rows = [("id", batch["id"]), ("status", batch["status"]), ("endpoint", batch["endpoint"]),
            ("requests", _progress_text(batch)), ("input file", batch["input_file_id"]),
            ("output file", batch["output_file_id"] or "-"), ("error file", batch["error_file_id"] or "-")]
    rows += [(name.removesuffix("_at").replace("_", " "), _when(batch[name]))
             for name in ("created_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at",
                          "cancelling_at", "cancelled_at", "expired_at", "expires_at") if batch.get(name)]
    rows += [("metadata", json.dumps(batch["metadata"]))] if batch.get("metadata") else []
    for error in (batch.get("errors") or {}).get("data") or []:
        where = f"line {error['line']}: " if error.get("line") else ""
        rows.append(("error", f"{error['code']}: {where}{error['message']}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _upload(client: ControlPlaneClient, path: Path, purpose: str) -> dict[str, Any]:
    if not path.is_file():
        fail(f"{path} is not a file")
    with path.open("rb") as file, _transfer_progress() as progress:
        task = progress.add_task(f"Uploading {path.name}", total=path.stat().st_size)
        return client.upload_file(path.name, _Reading(file, progress, task), purpose)


def _follow(client: ControlPlaneClient, batch_id: str, interval_s: float = 1.0) -> dict[str, Any]:
    """Poll a batch until it finishes, with a bar of its request counts."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(batch_id, total=None, failed="")
        while True:
            batch = client.get_batch(batch_id)
            counts = batch["request_counts"]
            failed = f"{counts['failed']} failed" if counts["failed"] else ""
            progress.update(task, description=f"{batch_id} {batch['status']}", total=counts["total"] or None,
                            completed=counts["completed"] + counts["failed"], failed=failed)
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(interval_s)


# --- files ----------------------------------------------------------------------------------------
@files_app.command("upload")
def files_upload(path: Path = typer.Argument(..., help="The JSONL file (at most 200 MB and 50,000 lines)."),
                 purpose: str = typer.Option("batch", "--purpose", help="What the file is for: batch."),
                 output: Output = OutputOption) -> None:
    """Upload a file, streaming it with a progress bar."""
    with control_plane() as client:
        uploaded = _upload(client, path, purpose)
    emit(uploaded, output, _files_table([uploaded]))


@files_app.command("list")
def files_list(purpose: str | None = typer.Option(None, "--purpose", help="Only files with this purpose."),
               limit: int = typer.Option(100, "--limit", min=1, max=10_000),
               output: Output = OutputOption) -> None:
    """Your files, newest first."""
    with control_plane() as client:
        page = client.list_files(limit=limit, purpose=purpose)
    emit(page, output, _files_table(page["data"]))


@files_app.command("delete")
def files_delete(file_id: str = typer.Argument(...), output: Output = OutputOption) -> None:
    """Delete a file and its content."""
    with control_plane() as client:
        deleted = client.delete_file(file_id)
    if output is Output.json:
        out.print_json(json.dumps(deleted))
    else:
        out.print(f"Deleted {deleted['id']}.")


# --- batches --------------------------------------------------------------------------------------
@batch_app.command("create")
def batch_create(
    input_file_id: str | None = typer.Option(None, "--input-file-id", "-i", help="An uploaded file's id."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A JSONL file to upload first."),
    endpoint: str = typer.Option(ENDPOINTS[0], "--endpoint", "-e", help=f"One of {', '.join(ENDPOINTS)}."),
    metadata: list[str] = typer.Option([], "--metadata", "-m", help="key=value (repeatable, at most 16)."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the batch until it finishes."),
    output: Output = OutputOption,
) -> None:
    """Create a batch from an uploaded file (or upload one first with --file)."""
    if (input_file_id is None) == (file is None):
        fail("give exactly one of --input-file-id and --file")
    pairs = [item.partition("=") for item in metadata]
    if any(not sep or not key for key, sep, _ in pairs):
        fail("--metadata takes key=value")
    with control_plane() as client:
        if file is not None:
            input_file_id = _upload(client, file, "batch")["id"]
            err.print(f"Uploaded {file.name} as {input_file_id}.")
        batch = client.create_batch({
            "input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h",
            "metadata": {key: value for key, _, value in pairs} or None})
        if wait:
            batch = _follow(client, batch["id"])
    emit(batch, output, _batch_detail(batch))


@batch_app.command("status")
def batch_status(batch_id: str = typer.Argument(...),
                 watch: bool = typer.Option(False, "--watch", "-w", help="Follow it until it finishes."),
                 output: Output = OutputOption) -> None:
    """A batch's status, request counts, result files and errors."""
    with control_plane() as client:
        batch = _follow(client, batch_id) if watch else client.get_batch(batch_id)
    emit(batch, output, _batch_detail(batch))


@batch_app.command("list")
def batch_list(limit: int = typer.Option(20, "--limit", min=1, max=100),
               after: str | None = typer.Option(None, "--after", help="Continue after this batch id."),
               output: Output = OutputOption) -> None:
    """Your batches, newest first (page with --after LAST_ID)."""
    with control_plane() as client:
        page = client.list_batches(limit=limit, after=after)
    table = _batches_table(page["data"])
    if page["has_more"]:
        table.caption = f"More: inferstack batch list --after {page['last_id']}"
    emit(page, output, table)


@batch_app.command("cancel")
def batch_cancel(batch_id: str = typer.Argument(...),
                 wait: bool = typer.Option(False, "--wait", "-w", help="Wait until it is cancelled."),
                 output: Output = OutputOption) -> None:
    """Stop a batch: no more requests are sent; the results so far are kept."""
    with control_plane() as client:
        batch = client.cancel_batch(batch_id)
        if wait:
            batch = _follow(client, batch_id)
    emit(batch, output, _batch_detail(batch))


@batch_app.command("download")
def batch_download(batch_id: str = typer.Argument(...),
                   directory: Path = typer.Option(Path("."), "--dir", "-d", help="Where to write the files."),
                   output: Output = OutputOption) -> None:
    """Download a finished batch's output and error files (<batch>_output.jsonl, <batch>_error.jsonl)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Any]] = {}
    with control_plane() as client:
        batch = client.get_batch(batch_id)
        if batch["status"] not in TERMINAL:
            fail(f"batch {batch_id} is {batch['status']}: its results are written when it finishes "
                 f"(follow it with `inferstack batch status {batch_id} --watch`)")
        for kind in ("output", "error"):
            file_id = batch[f"{kind}_file_id"]
            if file_id:
                target = directory / f"{batch_id}_{kind}.jsonl"
                size = _download(client, file_id, target, f"Downloading {kind}")
                written[kind] = {"file_id": file_id, "path": str(target), "bytes": size}
    if output is Output.json:
        out.print_json(json.dumps({"batch_id": batch_id, "status": batch["status"], "files": written}))
        return
    if not written:
        out.print(f"Batch {batch_id} is {batch['status']} and has no result files.")
    for kind, info in written.items():
        out.print(f"{kind}: {info['path']} ({info['bytes']:,} bytes)")
