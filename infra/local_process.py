"""The local target's control plane: `inferstack serve` as a background process on this machine.

A dynamic resource: `pulumi up` starts the process (detached, logging to INFERSTACK_HOME/serve.log)
and waits for /health; `pulumi destroy` stops the process it started (by the pid it recorded, never by
name); `pulumi refresh` notices a process that is gone, and the next `up` starts it again.

The platform API key reaches the process as INFERSTACK_BOOTSTRAP_API_KEY (the control plane registers
it for INFERSTACK_BOOTSTRAP_TENANT at start-up), so the declared deployments can be managed with it.
Like the deployment provider, every helper is a method: Pulumi pickles the class by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

from pickling import by_value

RESOURCE_TYPE = "pulumi-python:dynamic/inferstack:LocalControlPlane"


@by_value
class LocalProcessProvider(ResourceProvider):
    REPLACING = ("command", "host", "port", "home", "tenant", "api_key_digest")
    """Any change to these means a new process."""

    def __init__(self, api_key: pulumi.Input[str] | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    def _key(self) -> str | None:
        key = self.api_key
        if key is not None and not isinstance(key, str):
            key = key.get()
        return key

    def environment(self, props: dict[str, Any]) -> dict[str, str]:
        """The control plane's own variables, on top of the environment `pulumi up` runs in."""
        from pathlib import Path

        from inferstack.settings import Env

        env = {Env.HOME: str(Path(props["home"]).expanduser()), Env.BOOTSTRAP_TENANT: props["tenant"]}
        key = self._key()
        if key:
            env[Env.BOOTSTRAP_API_KEY] = key
        return env

    @staticmethod
    def _healthy(url: str) -> bool:
        import httpx

        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _alive(pid: int) -> bool:
        import os

        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def create(self, props: dict[str, Any]) -> CreateResult:
        import os
        import shutil
        import subprocess
        import sys
        import time
        from pathlib import Path

        url = f"http://{props['host']}:{int(props['port'])}"
        if self._healthy(url):
            raise RuntimeError(f"something already answers on {url}: stop it or choose another platform.local.port")
        home = Path(props["home"]).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        log_path = home / "serve.log"
        env = {**os.environ, **self.environment(props)}
        argv = [*props["command"], "--host", props["host"], "--port", str(int(props["port"]))]
        if shutil.which(argv[0]) is None:
            # `inferstack` from the program's virtualenv when that is not on PATH (Pulumi run outside it).
            sibling = Path(sys.executable).parent / argv[0]
            if sibling.exists():
                argv[0] = str(sibling)
        with log_path.open("ab") as log:
            # A new session: the server outlives `pulumi up`, and signals to Pulumi do not reach it.
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        deadline = time.monotonic() + float(props["startup_timeout_s"])
        while not self._healthy(url):
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the control plane exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                process.terminate()
                raise RuntimeError(f"the control plane did not answer on {url} in {props['startup_timeout_s']} s")
            time.sleep(0.2)
        outs = {k: props[k] for k in self.REPLACING if k in props}
        return CreateResult(str(process.pid), outs | {"url": url, "pid": process.pid, "log_path": str(log_path)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if self._alive(int(id_)) and self._healthy(props.get("url", "")):
            return ReadResult(id_, props)
        return ReadResult(None, {})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in self.REPLACING if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        import contextlib
        import os
        import signal
        import time

        pid = int(id_)
        if not self._alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self._alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if this process started it (tests)
            time.sleep(0.1)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class LocalControlPlaneArgs:
    command: list[str]
    host: str
    port: int
    home: str
    tenant: str
    startup_timeout_s: float
    api_key: pulumi.Input[str] | None = None


class LocalControlPlane(Resource, module="inferstack", name="LocalControlPlane"):
    url: pulumi.Output[str]
    pid: pulumi.Output[int]
    log_path: pulumi.Output[str]

    def __init__(self, name: str, args: LocalControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        import hashlib

        digest = (pulumi.Output.from_input(args.api_key).apply(
            lambda key: hashlib.sha256(key.encode()).hexdigest()[:16] if key else None)
            if args.api_key is not None else None)
        props = {"command": args.command, "host": args.host, "port": args.port, "home": args.home,
                 "tenant": args.tenant, "startup_timeout_s": args.startup_timeout_s, "api_key_digest": digest,
                 "url": None, "pid": None, "log_path": None}
        super().__init__(LocalProcessProvider(args.api_key), name, props, opts)
