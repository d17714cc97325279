"""LoRA adapters on running replicas: load what the spec lists and unload what it no longer does, through
vLLM's `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` (the replicas run with
VLLM_ALLOW_RUNTIME_LORA_UPDATING), without a restart.

A replica starts with the spec's adapters (`--lora-modules`); each pass of the loop, and at once after an
adapter is added or removed through the API, `sync` brings every ready replica to the spec. An adapter the
engine refuses is recorded on that replica (`adapter_failures`) and not tried there again; the gateway
sends an adapter's requests only to replicas that have it loaded (`LiveReplica.adapters`).

An S3 adapter is fetched where the engine reads it (`lora.engine_path`): for a replica on this machine into
the control plane's cache before the load; a cloud replica fetches its own S3 adapters at launch only, so
one added later is served by new replicas (`needs_new_replicas_for`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import aiohttp

from inferstack.controller.recorder import Recorder
from inferstack.errors import ApiError, engine_error_message
from inferstack.fleet import LiveDeployment, LiveReplica
from inferstack.lora import S3_SCHEME, AdapterSpec, adapter_model, engine_path
from inferstack.lora_fetch import AdapterCache, AdapterUnavailable
from inferstack.spec import DeploymentSpec, needs_new_replicas

LOAD_TIMEOUT_S = 600.0
"""A Hugging Face adapter is downloaded by the engine while the load request waits."""


class AdapterSync:
    def __init__(self, recorder: Recorder, cache: AdapterCache, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self._recorder = recorder
        self._cache = cache
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def check(self, adapters: list[AdapterSpec]) -> None:
        """Raises a 422 naming the first S3 adapter that cannot be read (a missing bucket or prefix, no
        adapter_config.json, no credentials); downloads nothing."""
        for adapter in adapters:
            if adapter.source.startswith(S3_SCHEME):
                try:
                    await asyncio.to_thread(self._cache.check, adapter.source)
                except AdapterUnavailable as exc:
                    raise ApiError(422, f"Adapter {adapter.name} cannot be read from {adapter.source}: {exc}",
                                   code="adapter_unavailable", param="source") from None

    async def sync(self, deployment: LiveDeployment) -> dict[str, str]:
        """Bring each ready replica's adapters to the spec. Returns the wanted adapters a ready replica's
        engine refused, by name, with the engine's reason: in this pass, or in one that ran first (the loop's
        pass and an API action's take turns, and a refused source is not tried again on that replica)."""
        async with self._locks[deployment.id]:  # the loop and an API action may ask at once
            wanted = {a.name: a.source for a in deployment.spec.adapters}
            # Outdated replicas are being replaced, some because they cannot take adapters (LoRA was off).
            current = [replica for replica in deployment.ready_replicas() if not replica.outdated]
            refused_before = {name: replica.adapter_failures[source] for replica in current
                              for name, source in wanted.items() if source in replica.adapter_failures}
            work = [(replica, name, source) for replica in current for name, source in _differences(replica, wanted)]
            if not work:
                return refused_before
            results = await asyncio.gather(*(self._apply(deployment, r, name, source) for r, name, source in work))
        loaded = sorted({f"{name} on {r.replica_id}" for (r, name, source), error in zip(work, results, strict=True)
                         if source is not None and error is None})
        unloaded = sorted({f"{name} on {r.replica_id}" for (r, name, source), error in zip(work, results, strict=True)
                           if source is None and error is None})
        failed = {name: error for (_, name, _), error in zip(work, results, strict=True) if error is not None}
        if loaded or unloaded:
            deployment.notify()  # held requests for a newly loaded adapter may go now
            await self._recorder.event(deployment, "adapters_synced", "; ".join(
                [f"loaded {', '.join(loaded)}"] * bool(loaded) + [f"unloaded {', '.join(unloaded)}"] * bool(unloaded)),
                {"loaded": loaded, "unloaded": unloaded})
        for name, error in sorted(failed.items()):
            await self._recorder.event(deployment, "adapter_failed", f"Adapter {name} did not load: {error}",
                                       {"adapter": name, "reason": error})
        return refused_before | failed

    async def _apply(self, deployment: LiveDeployment, replica: LiveReplica, name: str,
                     source: str | None) -> str | None:
        """Load `name` from `source` on `replica` (None: unload it); returns why the engine refused, or None."""
        model = adapter_model(deployment.name, name)
        if replica.adapters.get(name) not in (None, source):  # another source under the same name: swap it
            error = await self._call(replica, "/v1/unload_lora_adapter", {"lora_name": model}, tolerated=404)
            if error is not None:
                return error
            del replica.adapters[name]
        if source is None:
            error = await self._call(replica, "/v1/unload_lora_adapter", {"lora_name": model}, tolerated=404)
            if error is None:
                replica.adapters.pop(name, None)
            return error
        try:
            fetched = await self._cache.engine_sources([source])
        except AdapterUnavailable as exc:
            error = f"{source} could not be fetched: {exc}"
        else:
            error = await self._call(replica, "/v1/load_lora_adapter",
                                     {"lora_name": model, "lora_path": engine_path(source, fetched)}, tolerated=None)
        if error is None:
            replica.adapters[name] = source
        else:
            replica.adapter_failures[source] = error
        return error

    async def _call(self, replica: LiveReplica, path: str, body: dict[str, str], tolerated: int | None) -> str | None:
        """POST to the replica's engine; None when it did it (or, with `tolerated`, answered that status)."""
        if self._session is None:
            raise RuntimeError("AdapterSync.start() was not called")
        try:
            async with self._session.post(replica.url + path, json=body,
                                          headers={"Authorization": f"Bearer {replica.api_key}"}) as answer:
                if answer.status == 200 or answer.status == tolerated:
                    return None
                text = await answer.read()
                if answer.status == 400 and b"has already been loaded" in text:
                    return None  # loaded by an earlier pass whose answer was lost
                return engine_error_message(answer.status, text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"the replica did not answer ({type(exc).__name__})"


def needs_new_replicas_for(deployment: LiveDeployment, old: DeploymentSpec, new: DeploymentSpec) -> bool:
    """Whether going from `old` to `new` replaces the deployment's replicas: a change of their shape
    (`spec.needs_new_replicas`), or a new S3 adapter a running replica cannot load (one off this machine
    fetches S3 adapters at its launch only)."""
    if needs_new_replicas(old, new):
        return True
    added = {a.source for a in new.adapters} - {a.source for a in old.adapters}
    return any(s.startswith(S3_SCHEME) for s in added) and any(
        not r.handle.on_this_machine and not r.outdated for r in deployment.replicas.values())


def _differences(replica: LiveReplica, wanted: dict[str, str]) -> list[tuple[str, str | None]]:
    """(name, source) to load and (name, None) to unload on `replica`; never a source it refused before."""
    changes: list[tuple[str, str | None]] = [(name, None) for name in replica.adapters if name not in wanted]
    changes += [(name, source) for name, source in wanted.items()
                if replica.adapters.get(name) != source and source not in replica.adapter_failures]
    return changes
