"""A Kubernetes API for tests: kmock's emulator over real HTTP, with its gaps closed here, and a test
kubelet that plays the cluster's own controllers.

kmock's `KubernetesEmulator` stores objects; the gaps the provider must not paper over are closed in
`Emulator` (label selectors on list, a `Scale` object for the `scale` subresource, error bodies a
client recognises as the API's `Status`). `Kubelet` plays, every few milliseconds:
- the ReplicaSet: pods for a Deployment's `spec.replicas`, and on scale-down removes pods in the
  ReplicaSet's order (unscheduled, pending, not ready, then the lowest `pod-deletion-cost`);
- the garbage collector: the pods of a deleted Deployment go (each pod's `ownerReferences` names its
  ReplicaSet, which this kubelet plays under the Deployment's name);
- the scheduler: a pod gets a node while the pool has room (`capacity`), else PodScheduled False,
  Unschedulable;
- the kubelet: runs the pod's command as a process (the `sim` engine), with env from Secrets; pod IP
  127.x.y.n, distinct per pod (the pod's own network namespace), the port from the pod spec; Ready
  once /health answers; a killed process is a terminated container (restarted, as restartPolicy
  Always does), with the reason the test gives (OOMKilled). A pod in `hands_off` keeps its process, but
  its status is the test's to write over the API, as the kubelet would.
It writes objects straight into the emulator's store: the cluster's own components are not API
callers under the control plane's Role, so `Emulator.calls` holds the provider's requests only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import random
import shlex
import socket
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import kmock
from kmock._internal import rendering
from lightkube import AsyncClient, KubeConfig

T = TypeVar("T")
PODS = kmock.resource("", "v1", "pods")
SECRETS = kmock.resource("", "v1", "secrets")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def free_port_everywhere() -> int:
    """A port free on every address (the pods listen on 127.x.y.n with this one port)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based label selectors (`a=b,c=d`), the kind the provider sends."""
    if not selector:
        return True
    pairs = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(k.strip()) == v.strip() for k, v in pairs)


@dataclass(frozen=True)
class Call:
    verb: str
    resource: str
    """`deployments`, `deployments/scale`, `pods`..."""
    group: str


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with what the provider relies on from a real API server."""

    calls: list[Call]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.calls = []

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # kmock keeps every request and scans them all on each new one (quadratic): a provider polling
        # for minutes would slow it to a crawl. Nothing here asserts on kmock's history; `calls` is ours.
        del self._requests[:-1]
        if request.resource is not None and request.action is not None:
            self.calls.append(Call(verb=_verb(request), group=request.resource.group or "",
                                   resource=request.resource.plural + (f"/{request.subresource}"
                                                                       if request.subresource else "")))
        try:
            return await super()._handle(request)
        except kmock.KubernetesError as exc:  # outside `async with`, kmock lets them become a bare 500
            return await self._render_error(exc)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listed = await super()._serve_list(request)
        assert isinstance(listed, dict)
        selector = request.params.get("labelSelector")
        listed["items"] = [o for o in listed["items"] if matches(selector, o.get("metadata", {}).get("labels") or {})]
        return listed

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        found = await super()._serve_fetch(request)
        if request.resource == SECRETS and isinstance(found, dict) and "stringData" in found:
            # The API server keeps `stringData` as base64 `data`, and never shows `stringData` back.
            plain = found["stringData"]
            found = {k: v for k, v in found.items() if k != "stringData"}
            found["data"] = {**found.get("data", {}), **{k: base64.b64encode(v.encode()).decode()
                                                         for k, v in plain.items()}}
        if request.subresource == "scale":
            assert isinstance(found, dict)
            meta = found["metadata"]
            return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
                    "spec": {"replicas": found.get("spec", {}).get("replicas", 0)},
                    "status": {"replicas": found.get("status", {}).get("replicas", 0)}}
        return found

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # kmock says `application/json; charset=utf-8`; a real API server says `application/json`.
        status = exc.status if isinstance(exc, kmock.KubernetesError) and exc.status else 500
        reason = exc.reason if isinstance(exc, kmock.KubernetesError) and exc.reason else type(exc).__name__
        body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": status,
                "reason": reason, "message": str(exc)}
        return aiohttp.web.Response(body=json.dumps(body).encode(), status=status,
                                    headers={"Content-Type": "application/json"})


def _verb(request: rendering.Request) -> str:
    """The RBAC verb of a request: what a Role must grant for the API server to allow it."""
    action = str(request.action.value if request.action else "").lower()
    if action == "fetch":
        return "get"
    if action == "update":
        return "patch" if str(request.method.value).lower() == "patch" else "update"
    return action


@dataclass
class PodProcess:
    process: asyncio.subprocess.Process
    address: str
    port: int


@dataclass
class Kubelet:
    """The cluster's controllers for the emulator (see the module docstring)."""

    emulator: Emulator
    log_dir: Path
    capacity: int | None = None
    """Pods the node pool can hold; None: unlimited."""
    tick_s: float = 0.05
    processes: dict[str, PodProcess] = field(default_factory=dict)
    kill_reasons: dict[str, str] = field(default_factory=dict)
    hands_off: set[str] = field(default_factory=set)
    """Pods whose status the test writes (see the module docstring)."""
    _net: str = field(default_factory=lambda: f"127.{random.randint(10, 250)}.{random.randint(1, 250)}")
    _next_ip: int = 1
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pod in list(self.processes):
            await self._end_process(pod)

    # --- what a test does to the cluster --------------------------------------------------------------
    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o.raw for (r, ns, _), o in self.emulator.objects.items()
                if r == PODS and not o.deleted and (namespace is None or ns == namespace)]

    async def kill(self, pod_name: str, reason: str = "Error") -> None:
        """The pod's container dies (reason OOMKilled: the kernel's OOM killer); the kubelet restarts it."""
        self.kill_reasons[pod_name] = reason
        self.processes[pod_name].process.kill()

    async def evict(self, pod_name: str) -> None:
        """Node pressure: the pod is evicted (phase Failed, reason Evicted); the ReplicaSet replaces it."""
        key = self._pod_key(pod_name)
        self.emulator.objects[key].patch({"status": {"phase": "Failed", "reason": "Evicted",
                                                     "message": "The node was low on resource: memory."}})

    # --- the loop --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._replica_sets()
                await self._schedule()
                await self._run_pods()
            except Exception as exc:  # a harness bug must show, not stall the test silently
                print(f"kubelet: {exc!r}", file=sys.stderr)
                raise
            await asyncio.sleep(self.tick_s)

    def _live_pods(self) -> list[tuple[Any, dict[str, Any]]]:
        return [(key, o.raw) for key, o in self.emulator.objects.items() if key[0] == PODS and not o.deleted]

    async def _replica_sets(self) -> None:
        deployments = [(key, o.raw) for key, o in self.emulator.objects.items()
                       if key[0] == DEPLOYMENTS and not o.deleted]
        live = {(namespace, name) for (_, namespace, name), _ in deployments}
        for key, pod in self._live_pods():
            owners = [o["name"] for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"]
            if owners and (key[1], owners[0]) not in live:
                await self._end_process(key[2])
                self.emulator.objects[key].delete()
        for (_, namespace, name), deployment in deployments:
            selector = deployment["spec"]["selector"]["matchLabels"]
            owned = [(key, pod) for key, pod in self._live_pods()
                     if key[1] == namespace and all(pod["metadata"].get("labels", {}).get(k) == v
                                                   for k, v in selector.items())
                     and pod.get("status", {}).get("phase") not in ("Failed", "Succeeded")]
            desired = int(deployment["spec"].get("replicas") or 0)
            for _ in range(desired - len(owned)):
                pod_name = f"{name}-{random.randbytes(4).hex()}"
                template = deployment["spec"]["template"]
                self.emulator.objects[(PODS, namespace, pod_name)] = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name, "namespace": namespace, "annotations": {},
                                 "labels": dict(template["metadata"]["labels"]), "creationTimestamp": now_iso(),
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
                                                      "uid": f"uid-{name}", "controller": True}]},
                    "spec": template["spec"], "status": {"phase": "Pending"}}
            if len(owned) > desired:
                for key, _pod in sorted(owned, key=lambda kp: _deletion_rank(kp[1]))[:len(owned) - desired]:
                    await self._end_process(key[2])
                    self.emulator.objects[key].delete()

    async def _schedule(self) -> None:
        scheduled = sum(1 for _, pod in self._live_pods() if pod["spec"].get("nodeName")
                        and pod.get("status", {}).get("phase") not in ("Failed", "Succeeded"))
        for key, pod in self._live_pods():
            if pod["spec"].get("nodeName"):
                continue
            if self.capacity is not None and scheduled >= self.capacity:
                self.emulator.objects[key].patch({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                    "lastTransitionTime": now_iso()}]}})
                continue
            scheduled += 1
            ip = f"{self._net}.{self._next_ip}"
            self._next_ip += 1
            self.emulator.objects[key].patch({"spec": {"nodeName": "node-1"}, "status": {
                "phase": "Pending", "podIP": ip, "hostIP": "127.0.0.1",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}]}})

    async def _run_pods(self) -> None:
        for key, pod in self._live_pods():
            name = key[2]
            status = pod.get("status", {})
            if not pod["spec"].get("nodeName") or status.get("phase") in ("Failed", "Succeeded"):
                if name in self.processes:
                    await self._end_process(name)
                continue
            running = self.processes.get(name)
            if name in self.hands_off:
                continue
            if running is None:
                await self._start_process(key, pod)
            elif running.process.returncode is not None:
                await self._restart(key, pod, running)
            elif not _ready(pod) and await _healthy(running):
                self._set_container(key, pod, ready=True)

    async def _start_process(self, key: Any, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
        address = pod["status"]["podIP"]
        argv = [sys.executable if a == "python3" else a for a in container["command"]]
        argv = [address if a == "0.0.0.0" else a for a in argv]  # the pod's network namespace: its own IP
        env = {**os.environ, **self._env(key[1], container)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{key[2]}.log").open("ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                           stderr=log, env=env, start_new_session=True)
        self.processes[key[2]] = PodProcess(process=process, address=address, port=port)
        self._set_container(key, pod, ready=False)

    def _env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            secret = self.emulator.objects[(SECRETS, namespace, ref["name"])].raw
            data = secret.get("stringData") or {}
            if ref["key"] in data:
                env[item["name"]] = data[ref["key"]]
            else:
                env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return env

    async def _restart(self, key: Any, pod: dict[str, Any], running: PodProcess) -> None:
        code = running.process.returncode
        reason = self.kill_reasons.pop(key[2], "Error")
        restarts = int((pod["status"].get("containerStatuses") or [{}])[0].get("restartCount") or 0) + 1
        del self.processes[key[2]]
        await self._start_process(key, self.emulator.objects[key].raw)
        self._set_container(key, self.emulator.objects[key].raw, ready=False, restarts=restarts, last={
            "terminated": {"exitCode": 137 if reason == "OOMKilled" else code, "reason": reason,
                           "finishedAt": now_iso()}})

    def _set_container(self, key: Any, pod: dict[str, Any], *, ready: bool, restarts: int | None = None,
                       last: dict[str, Any] | None = None) -> None:
        previous = (pod["status"].get("containerStatuses") or [{}])[0]
        image = pod["spec"]["containers"][0]["image"]
        container = {"name": "engine", "image": image, "imageID": f"{image}@sha256:0", "ready": ready,
                     "restartCount": previous.get("restartCount", 0) if restarts is None else restarts,
                     "state": {"running": {"startedAt": now_iso()}},
                     "lastState": previous.get("lastState", {}) if last is None else last}
        conditions = [c for c in pod["status"].get("conditions", []) if c["type"] not in ("Ready", "ContainersReady")]
        flag = "True" if ready else "False"
        conditions += [{"type": "Ready", "status": flag}, {"type": "ContainersReady", "status": flag}]
        self.emulator.objects[key].patch({"status": {"phase": "Running", "conditions": conditions,
                                                     "containerStatuses": [container]}})

    async def _end_process(self, pod_name: str) -> None:
        running = self.processes.pop(pod_name, None)
        if running is None or running.process.returncode is not None:
            return
        running.process.terminate()
        try:
            await asyncio.wait_for(running.process.wait(), 10)
        except TimeoutError:
            running.process.kill()
            await running.process.wait()

    def _pod_key(self, pod_name: str) -> Any:
        return next(key for key, _ in self._live_pods() if key[2] == pod_name)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def _deletion_rank(pod: dict[str, Any]) -> tuple[int, int, int, int]:
    """The ReplicaSet's order for removal (controller.ActivePodsWithRanks): unscheduled, then pending,
    then not ready, then the lower pod-deletion-cost."""
    status = pod.get("status", {})
    cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    return (1 if pod["spec"].get("nodeName") else 0, 1 if status.get("phase") == "Running" else 0,
            1 if _ready(pod) else 0, cost)


async def _healthy(running: PodProcess) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://{running.address}:{running.port}/health", timeout=aiohttp.ClientTimeout(total=0.5)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


class Cluster:
    """The emulator, its HTTP server and the kubelet on an event loop of their own (a thread), so sync
    tests and a control plane in a subprocess can both use it."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.emulator: Emulator
        self.kubelet: Kubelet
        self.url = ""
        self._server: Any = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(60)

    async def on_cluster(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` (e.g. `kubelet.kill(...)`) on the cluster's own loop, from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def __enter__(self) -> Cluster:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.emulator = Emulator()
        for resource in (PODS, SECRETS, DEPLOYMENTS):
            self.emulator.resources[resource] = {}  # declared: an empty kind lists as empty, not 404
        self._server = kmock.Server(self.emulator)
        await self._server.__aenter__()
        self.url = str(self._server.url).rstrip("/")
        self.kubelet = Kubelet(self.emulator, self._log_dir)
        self.kubelet.start()

    def __exit__(self, *_: object) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        await self.kubelet.stop()
        await self._server.__aexit__(None, None, None)

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig for this API (what KUBECONFIG names for a control plane outside the cluster)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test",
                                                          "namespace": namespace}}]}))
        return path


    def client(self, directory: Path, namespace: str) -> AsyncClient:
        """A lightkube client as a control plane outside the cluster makes one: from a kubeconfig."""
        directory.mkdir(parents=True, exist_ok=True)
        return AsyncClient(config=KubeConfig.from_file(self.kubeconfig(directory / "kubeconfig", namespace)))


@contextlib.contextmanager
def running_cluster(log_dir: Path) -> Iterator[Cluster]:
    with Cluster(log_dir) as cluster:
        yield cluster
