from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inferstack.server import open_database
from inferstack.store import Store
from support import (
    TINY_VLLM_SPEC,
    ControlPlane,
    TinyVllm,
    free_port,
    postgres_schema,
    vllm_python,
    wait_for,
    wait_running,
)

# Tests that need a service or program this machine may lack. Locally they skip, saying why; under CI=true
# (`.ci/test` provides them all) such a skip is a failure, so a green run means they ran.
REQUIRED_IN_CI = ("postgres", "vllm", "browser")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if (report.skipped and os.environ.get("CI") == "true"
            and any(item.get_closest_marker(name) for name in REQUIRED_IN_CI)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every PostgreSQL, vLLM and browser test: {reason}"
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real-vLLM tests run last, those sharing `tiny_vllm` at the very end, so its replica idles through no
    other test (the session ends right after them)."""
    items.sort(key=lambda item: ("vllm" in item.keywords) + ("tiny_vllm" in getattr(item, "fixturenames", ())))


@pytest.fixture(scope="module")
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane (a `serve` subprocess on SQLite) shared by a test module, each test with its own
    tenant. Modules that need another store or settings define their own `plane`."""
    plane = ControlPlane(home=tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "home").start()
    yield plane
    plane.stop()


TINY_LLAMA = Path(__file__).resolve().parents[1] / "runtime" / "inferstack" / "engines" / "tiny_llama.py"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama (runtime/inferstack/engines/tiny_llama.py) for real vLLM replicas, built once."""
    python = vllm_python()
    if python is None:
        pytest.skip("INFERSTACK_VLLM_PYTHON is not set: run `bash .ci/test`, which builds the vLLM CPU venv")
    model_dir = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([python, str(TINY_LLAMA), str(model_dir)], check=True, capture_output=True, timeout=300)
    return model_dir


@pytest.fixture(scope="session")
def tiny_vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyVllm]:
    """One control plane serving the deployment `tiny` on a real vLLM replica, shared by the tests that need
    one running: a vLLM start is the slowest thing in the suite. The tests that stop or kill its replica
    leave it running again, or deleted."""
    python = vllm_python()
    assert python is not None  # tiny_model skipped otherwise
    plane = ControlPlane(home=tmp_path_factory.mktemp("tiny-vllm") / "home",
                         env_extra={"INFERSTACK_VLLM_PYTHON": python, "INFERSTACK_HISTORY_INTERVAL_S": "0.5"}).start()
    try:
        key = plane.create_key("vllm-team")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={**TINY_VLLM_SPEC, "hf_model_id": str(tiny_model),
                                                     "hf_token": "hf_must_not_leak"})
        assert created.status_code == 201, created.text
        yield TinyVllm(plane, key, wait_running(rest, created.json()["id"], timeout=400))
    finally:
        plane.stop()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(home=tmp_path / "home").start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on SQLite and on the real PostgreSQL server (each test runs on both)."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
               else stack.enter_context(postgres_schema()))
        store = open_database(url)
        yield store
        store.engine.dispose()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local AWS emulator (moto in server mode), spoken to over HTTP by boto3; shared by the session."""
    port = free_port()
    with (tmp_path_factory.mktemp("moto") / "moto.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=30, what="the moto AWS server")
            yield url
        finally:
            server.terminate()
            server.wait(10)


@pytest.fixture
def moto_reset(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A blank AWS account (the server is shared by the session) and test credentials for boto3."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint
