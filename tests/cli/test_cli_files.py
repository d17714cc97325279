"""`inferstack files ...` and `inferstack batch ...` against a real control plane with a sim replica."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from inferstack.cli.files import batch_app, files_app
from support import ControlPlane, sim_deployment

cli = typer.Typer()
cli.add_typer(files_app, name="files")
cli.add_typer(batch_app, name="batch")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path_factory.mktemp("cli") / "home",
                         env_extra={"INFERSTACK_CONTROLLER_TICK_S": "0.2"}).start()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def env(plane: ControlPlane) -> dict[str, str]:
    key = plane.create_key("cli-user")
    sim_deployment(plane, key, "clibot")
    return {"INFERSTACK_URL": plane.url, "INFERSTACK_API_KEY": key}


def run(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert (result.exit_code == 0) == ok, (result.exit_code, result.stdout, result.stderr)
    return result


def requests_file(path: Path, count: int, model: str = "clibot") -> Path:
    path.write_bytes(b"".join(orjson.dumps({
        "custom_id": f"cli-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": f"hello {i}"}]},
    }) + b"\n" for i in range(count)))
    return path


def test_upload_create_wait_and_download(env: dict[str, str], tmp_path: Path) -> None:
    path = requests_file(tmp_path / "cli.jsonl", 40)
    uploaded = json.loads(run(env, "files", "upload", str(path), "-o", "json").stdout)
    assert uploaded["bytes"] == path.stat().st_size and uploaded["filename"] == "cli.jsonl"
    listed = json.loads(run(env, "files", "list", "--purpose", "batch", "-o", "json").stdout)
    assert uploaded["id"] in [f["id"] for f in listed["data"]]
    assert uploaded["id"] in run(env, "files", "list").stdout  # the table

    batch = json.loads(run(env, "batch", "create", "-i", uploaded["id"], "-m", "owner=cli", "--wait",
                           "-o", "json").stdout)
    assert batch["status"] == "completed" and batch["metadata"] == {"owner": "cli"}
    assert batch["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    status = run(env, "batch", "status", batch["id"])
    assert "completed" in status.stdout and batch["id"] in status.stdout

    downloaded = json.loads(run(env, "batch", "download", batch["id"], "-d", str(tmp_path / "out"),
                                "-o", "json").stdout)
    output = Path(downloaded["files"]["output"]["path"])
    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"cli-{i}" for i in range(40))
    assert "error" not in downloaded["files"]

    assert "Deleted" in run(env, "files", "delete", uploaded["id"]).stdout
    gone = run(env, "files", "delete", uploaded["id"], ok=False)
    assert "No such File" in gone.stderr


def test_create_from_a_local_file_list_and_cancel(env: dict[str, str], tmp_path: Path) -> None:
    path = requests_file(tmp_path / "direct.jsonl", 3, model="no-such-deployment")
    failed = json.loads(run(env, "batch", "create", "-f", str(path), "--wait", "-o", "json").stdout)
    assert failed["status"] == "failed"
    assert [e["code"] for e in failed["errors"]["data"]] == ["model_not_found"] * 3
    page = json.loads(run(env, "batch", "list", "--limit", "1", "-o", "json").stdout)
    assert [b["id"] for b in page["data"]] == [failed["id"]]
    refused = run(env, "batch", "cancel", failed["id"], ok=False)
    assert "Cannot cancel a batch that is failed" in refused.stderr
    early = run(env, "batch", "download", failed["id"], "-d", str(tmp_path))
    assert "no result files" in early.stdout
    wrong = run(env, "batch", "create", "-i", "file-x", "-f", str(path), ok=False)
    assert "exactly one of" in wrong.stderr
