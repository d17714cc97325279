"""Helpers shared by the suites: a real control plane in a subprocess, and waiting on conditions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
INFERSTACK = str(Path(sys.executable).parent / "inferstack")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 30, interval: float = 0.05, what: str = "") -> T:
    """Poll until `condition()` is truthy; fail with `what` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class ControlPlane:
    """`inferstack serve` running as a subprocess against its own INFERSTACK_HOME."""

    home: Path
    port: int = field(default_factory=free_port)
    env_extra: dict[str, str] = field(default_factory=dict)
    serve_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "INFERSTACK_HOME": str(self.home), "INFERSTACK_URL": self.url,
                "INFERSTACK_CONTROLLER_TICK_S": "0.1", **self.env_extra}

    def start(self) -> ControlPlane:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / "serve.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([INFERSTACK, "serve", "--port", str(self.port), *self.serve_args],
                                            env=self.env,
                                            stdout=log, stderr=log, start_new_session=True)
        wait_for(self._healthy, timeout=30, what=f"control plane on {self.url} (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"control plane exited: {self.log_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def create_key(self, tenant: str) -> str:
        done = subprocess.run([INFERSTACK, "keys", "create", "--tenant", tenant], env=self.env,
                              capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def cli(self, key: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INFERSTACK, *args], env={**self.env, "INFERSTACK_API_KEY": key},
                              capture_output=True, text=True, check=check, timeout=300)


TINY_VLLM_SPEC = {"name": "tiny", "engine": "vllm", "hardware_profile": "cpu", "max_model_len": 256,
                  "engine_args": ["--dtype", "bfloat16", "--enforce-eager"]}
"""A deployment of the tiny test Llama (the `tiny_model` fixture) on real vLLM, all but `hf_model_id`."""


class TinyVllm(NamedTuple):
    """The shared real-vLLM control plane (the `tiny_vllm` fixture): its tenant's key and the running deployment."""

    plane: ControlPlane
    key: str
    deployment: dict[str, Any]


def wait_running(client: httpx.Client, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        info = client.get(f"/v1/deployments/{deployment_id}").json()
        assert info["status"] != "failed", info["status_reason"]
        return info if info["status"] == "running" else None

    return wait_for(running, timeout=timeout, interval=0.1, what=f"{deployment_id} running")


SIM_SPEC = {"hf_model_id": "inferstack/sim-chat", "engine": "sim", "hardware_profile": "cpu"}


def sim_deployment(plane: ControlPlane, key: str, name: str, ttft_ms: int = 1, **fields: Any) -> str:
    """Create a fast `sim` deployment, wait until it runs, and return its id."""
    rest = plane.client(key)
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": name, **fields,
                                                 "engine_args": ["--ttft-ms", str(ttft_ms), "--tokens-per-s", "0"]})
    assert created.status_code == 201, created.text
    wait_running(rest, created.json()["id"])
    return created.json()["id"]


def children_of(pid: int) -> list[int]:
    """Every descendant process of `pid` (from /proc), to check none outlive the control plane."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def vllm_python() -> str | None:
    """The vLLM CPU environment's interpreter (built by .ci/setup-vllm), if this machine has one."""
    path = os.environ.get("INFERSTACK_VLLM_PYTHON")
    return path if path and Path(path).exists() else None


POSTGRES_URL = os.environ.get("INFERSTACK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server (skipped, saying so, when none is reachable)."""
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}): tested on SQLite only")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with admin.begin() as connection:
        connection.execute(text(f"create schema {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


SHARED_TOKEN_KEY = "a-shared-secret-from-the-secret-store-0123456789"
"""The `INFERSTACK_TOKEN_KEY` every instance of one control plane shares (from a secret store in production)."""


@contextmanager
def leader_and_follower(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    """Two `serve` instances on a fresh PostgreSQL schema, sharing the token key: the first one up leads."""
    with postgres_schema() as url:
        env = {**env, "INFERSTACK_DATABASE_URL": url, "INFERSTACK_TOKEN_KEY": SHARED_TOKEN_KEY}
        leader = ControlPlane(home=tmp_path / "a", env_extra=env).start()
        follower = ControlPlane(home=tmp_path / "b", env_extra=env)
        try:
            follower.start()
            yield leader, follower
        finally:
            follower.stop()
            leader.stop()


def wait_adopted(follower: ControlPlane, key: str, deployment_id: str) -> None:
    """Until the follower leads and has kept the previous leader's replicas (its `adopted` event)."""
    rest = follower.client(key)

    def adopted() -> bool:
        events = rest.get(f"/v1/deployments/{deployment_id}/events").json()["data"]
        return "leading (epoch" in follower.log_text() and any(e["kind"] == "adopted" for e in events)

    wait_for(adopted, timeout=30, what="the follower leads and has kept the replica")
