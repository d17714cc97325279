"""Real `sim` replicas under `inferstack serve`: what their environment holds, and what a dead reaper takes.

The control plane is started with secrets in its environment (a bootstrap key, the database URL,
cloud credentials); none may be readable in /proc/<engine>/environ. A `kill -9` on a replica's
supervisor takes its engine with it, and the loop starts a replacement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferstack.providers import orphans
from inferstack.providers.reaper import PARENT_PID_ENV
from support import SIM_SPEC, ControlPlane, sim_deployment, wait_for, wait_running

SECRETS = {"INFERSTACK_BOOTSTRAP_API_KEY": "isk-bootstrap-3b1f0c", "AWS_SECRET_ACCESS_KEY": "aws-secret-9d2e",
           "AWS_ACCESS_KEY_ID": "AKIA-e2e-test", "GITHUB_TOKEN": "ghp_e2e_test"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("replica-processes")
    database = home / "db" / "state.db"
    database.parent.mkdir()
    env = {**SECRETS, "INFERSTACK_DATABASE_URL": f"sqlite:///{database}"}
    plane = ControlPlane(home=home / "home", env_extra=env).start()
    try:
        yield plane
    finally:
        plane.stop()


def processes(plane: ControlPlane) -> dict[str, list[psutil.Process]]:
    """The plane's replica processes by replica id (its reaper and its engine)."""
    assert plane.process is not None
    found: dict[str, list[psutil.Process]] = {}
    for process in psutil.Process(plane.process.pid).children(recursive=True):
        try:
            replica_id = process.environ().get("INFERSTACK_REPLICA_ID")
        except psutil.Error:
            continue
        if replica_id:
            found.setdefault(replica_id, []).append(process)
    return found


def engine(group: list[psutil.Process]) -> psutil.Process:
    [found] = [p for p in group if "inferstack.engines.sim" in " ".join(p.cmdline())
               and "inferstack.providers.reaper" not in " ".join(p.cmdline())]
    return found


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_replica_sees_none_of_the_control_planes_secrets(plane: ControlPlane) -> None:
    key = plane.create_key("team")
    dep_id = sim_deployment(plane, key, "env-check")
    replica_id = plane.client(key).get(f"/v1/deployments/{dep_id}").json()["replicas"][0]["id"]
    environ = Path(f"/proc/{engine(processes(plane)[replica_id]).pid}/environ").read_bytes()
    variables = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)

    for name, value in {**SECRETS, "INFERSTACK_DATABASE_URL": "state.db"}.items():
        assert name.encode() not in variables and value.encode() not in environ, name
    assert not [name for name in variables if name.startswith((b"AWS_", b"INFERSTACK_DATABASE", b"INFERSTACK_BOOT"))]
    assert variables[b"VLLM_API_KEY"]  # what the replica needs to check the gateway's calls
    assert variables[b"INFERSTACK_REPLICA_ID"] == replica_id.encode()


def test_killing_a_replicas_supervisor_takes_its_engine_with_it_and_it_is_replaced(plane: ControlPlane) -> None:
    key = plane.create_key("team")
    rest = plane.client(key)
    dep_id = sim_deployment(plane, key, "reaper-check")
    first = rest.get(f"/v1/deployments/{dep_id}").json()["replicas"][0]["id"]
    group = processes(plane)[first]
    reaper = next(p for p in group if "inferstack.providers.reaper" in " ".join(p.cmdline()))
    its_engine = engine(group)

    reaper.send_signal(signal.SIGKILL)
    wait_for(lambda: gone(its_engine), timeout=5, what="the engine to die with its reaper")

    def replaced() -> bool:
        replicas = rest.get(f"/v1/deployments/{dep_id}").json()["replicas"]
        return [r["status"] for r in replicas] == ["ready"] and replicas[0]["id"] != first

    wait_for(replaced, timeout=30, what="a replacement replica")
    assert first not in processes(plane)  # nothing of the old replica is left running


def test_a_stream_cut_by_a_dying_engine_ends_with_an_error_the_openai_client_raises(plane: ControlPlane) -> None:
    key = plane.create_key("team")
    rest = plane.client(key)
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "cut-stream",
                                                 "engine_args": ["--ttft-ms", "1", "--tokens-per-s", "20"]})
    wait_running(rest, created.json()["id"])
    replica_id = rest.get(f"/v1/deployments/{created.json()['id']}").json()["replicas"][0]["id"]
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(model="cut-stream", messages=[{"role": "user", "content": "go on"}],
                                            stream=True, max_tokens=1000)
    received = 0
    with pytest.raises(openai.APIError) as caught:  # not a broken chunked body (httpx.RemoteProtocolError)
        for _chunk in stream:
            received += 1
            if received == 3:
                engine(processes(plane)[replica_id]).kill()
    assert received >= 3 and "broke off" in str(caught.value)


def test_a_caller_hanging_up_counts_as_client_closed_on_metrics(plane: ControlPlane) -> None:
    key = plane.create_key("team")
    rest = plane.client(key)
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "hang-up",
                                                 "engine_args": ["--ttft-ms", "1", "--tokens-per-s", "10"]})
    dep_id = created.json()["id"]
    wait_running(rest, dep_id)
    body = {"model": "hang-up", "messages": [{"role": "user", "content": "a long story"}], "max_tokens": 200,
            "stream": True}
    with rest.stream("POST", "/v1/chat/completions", json=body) as response:
        for _ in zip(range(3), response.iter_lines(), strict=False):
            pass  # a few tokens, then hang up (200 at 10/s would take 20 s)

    def counted() -> dict[str, float]:
        page = rest.get("/metrics").text
        return {sample.labels["code"]: sample.value for family in text_string_to_metric_families(page)
                for sample in family.samples
                if sample.name == "inferstack_gateway_requests_total" and sample.labels["deployment"] == dep_id}

    wait_for(lambda: counted().get("499"), timeout=10, what="the hang-up on /metrics")
    assert counted() == {"499": 1.0}  # not a 502, not a 200


def test_at_start_the_control_plane_stops_replicas_a_killed_one_left_in_its_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gone_control_plane = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_control_plane.wait()
    left_behind = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={"PATH": os.environ["PATH"], orphans.REPLICA_OWNER_ENV: str((home / "logs").resolve()),
             orphans.REPLICA_ID_ENV: "rep-old", PARENT_PID_ENV: str(gone_control_plane.pid)})
    plane = ControlPlane(home=home).start()
    try:
        assert left_behind.wait(10) == -signal.SIGKILL
    finally:
        plane.stop()
        left_behind.kill()
        left_behind.wait()
