"""The local provider: replicas are child processes on free loopback ports, the embedded default.

Each replica runs under `inferstack.providers.reaper`, so no replica outlives the control plane,
however the control plane ends (see reaper.py), nor its reaper. Replicas start with an allow-listed
environment (`engines.launch.replica_environment`) plus markers that let this installation find its own
replica processes again (`providers/orphans.py`): those of a replica whose reaper died are stopped when
the loop reaps it, and those a previous control plane left are stopped by `reclaim_orphans` at start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from inferstack.engines.launch import EngineUnavailable, plan_launch, replica_environment
from inferstack.lora_fetch import AdapterCache, AdapterUnavailable
from inferstack.providers import orphans
from inferstack.providers.base import ProviderError, ReplicaHandle
from inferstack.spec import DeploymentSpec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalProvider:
    def __init__(self, log_dir: Path, vllm_python: str | None, adapters: AdapterCache,
                 stop_timeout_s: float = 15.0) -> None:
        """`adapters`: where the spec's S3 adapters are fetched to before a replica starts with them."""
        self._log_dir = log_dir
        self._adapters = adapters
        self._vllm_python = vllm_python
        self._stop_timeout_s = stop_timeout_s
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._owner = str(log_dir.resolve())  # one installation (INFERSTACK_HOME), one set of replicas
        self._swept: set[str] = set()

    def reclaim_orphans(self) -> int:
        """Stop the replica processes of this installation that a previous control plane left running."""
        return orphans.reclaim(self._owner)

    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle:
        port = free_port()
        try:
            fetched = await self._adapters.engine_sources([a.source for a in spec.adapters])
            plan = plan_launch(spec, deployment_id, name, port, replica_api_key, self._vllm_python, fetched=fetched)
        except (EngineUnavailable, AdapterUnavailable) as exc:
            raise ProviderError(str(exc)) from exc
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{replica_id}.log"
        env = {**replica_environment(os.environ, plan), **orphans.markers(self._owner, replica_id),
               "PYTHONUNBUFFERED": "1"}
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "inferstack.providers.reaper",
                "--group-file", str(orphans.group_file(self._owner, replica_id)), "--", *plan.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        self._processes[replica_id] = process
        return ReplicaHandle(replica_id=replica_id, url=f"http://127.0.0.1:{port}", pid=process.pid,
                             log_path=str(log_path))

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        process = self._processes.get(handle.replica_id)
        if process is None or process.returncode is None:
            return None
        if self._first_sweep(handle.replica_id):  # its reaper is gone: so must be all it ran
            orphans.sweep_replica(self._owner, handle.replica_id)
        return process.returncode

    async def stop(self, handle: ReplicaHandle) -> None:
        process = self._processes.pop(handle.replica_id, None)
        if process is None:
            return
        stopped_by_its_reaper = False
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # the reaper stops the replica's whole process group
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout_s)
                stopped_by_its_reaper = True
            except TimeoutError:
                process.kill()
                await process.wait()
        if stopped_by_its_reaper:  # nothing of the group is left to look for
            orphans.group_file(self._owner, handle.replica_id).unlink(missing_ok=True)
        elif self._first_sweep(handle.replica_id):  # what a killed reaper leaves: vLLM's engine core
            await asyncio.to_thread(orphans.sweep_replica, self._owner, handle.replica_id)

    def _first_sweep(self, replica_id: str) -> bool:
        first = replica_id not in self._swept
        self._swept.add(replica_id)
        return first

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        return []  # children of the process that started them: they went with it

    async def hand_over(self) -> bool:
        await self.close()  # a local replica is a child of this process: it cannot outlive it
        return False

    async def close(self) -> None:
        handles = [ReplicaHandle(rid, "", p.pid, "") for rid, p in self._processes.items()]
        await asyncio.gather(*(self.stop(h) for h in handles))
