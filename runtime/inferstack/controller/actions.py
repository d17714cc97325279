"""What users ask of a deployment through the API: create, update, stop, resume, delete.

Each action changes the live fleet and the store together (so they never disagree), leaves an event,
and nudges the loop to act on the change now rather than at the next tick. On an instance that does
not lead, the replicas are the leader's: the action records the change, and the leader carries out
what it means for the replicas when it reads the row (`controller/sync.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from inferstack.clock import Clock
from inferstack.controller.adapters import AdapterSync, needs_new_replicas_for
from inferstack.controller.recorder import Recorder
from inferstack.controller.replicas import ReplicaLifecycle
from inferstack.errors import ApiError
from inferstack.fleet import Fleet, LiveDeployment
from inferstack.lora import AdapterSpec
from inferstack.spec import DeploymentSpec, DeploymentStatus, DeploymentUpdate


class DeploymentActions:
    def __init__(self, fleet: Fleet, recorder: Recorder, replicas: ReplicaLifecycle, adapters: AdapterSync,
                 clock: Clock, nudge: Callable[[], None], leading: Callable[[], bool] = lambda: True) -> None:
        """`leading` says whether this instance leads now (and so drives the replicas)."""
        self._fleet = fleet
        self._adapters = adapters
        self._leading = leading
        self._recorder = recorder
        self._replicas = replicas
        self._clock = clock
        self._nudge = nudge

    async def create(self, tenant_id: str, spec: DeploymentSpec, warnings: Sequence[str] = ()) -> LiveDeployment:
        """Raises `store.DuplicateName` when the tenant already has a deployment of that name. `warnings`
        (what the API could not check) go into the record after the creation. An S3 adapter that cannot be
        read is a 422, and nothing is created."""
        await self._adapters.check(spec.adapters)
        deployment = await self._recorder.create(tenant_id, spec, self._clock.now())
        await self._recorder.event(deployment, "created", f"Created {spec.hf_model_id} on {spec.hardware_profile} "
                                   f"({spec.min_replicas}..{spec.max_replicas} replicas, engine {spec.engine})", {},
                                   by_user=True)
        for warning in warnings:
            await self._recorder.event(deployment, "warning", warning, {}, by_user=True)
        # Into the fleet last, with no wait before the caller answers: the answer shows the deployment
        # as created (status `created`), before the controller starts provisioning it.
        live = self._fleet.add(deployment)
        self._nudge()
        return live

    async def update(self, deployment: LiveDeployment, change: DeploymentUpdate) -> None:
        """Apply a spec change. Replicas started under the old shape are replaced one by one, each
        serving until its replacement is ready."""
        changes = change.changes()
        spec = deployment.spec.with_changes(changes)  # raises ValidationError, changes nothing
        await self._adapters.check([a for a in spec.adapters if a not in deployment.spec.adapters])  # or a 422
        # The database first: when its write fails, the live view still shows what is stored.
        await self._recorder.save_spec(deployment, spec)
        old, deployment.spec = deployment.spec, spec
        if change.immediate_scale_down:
            deployment.autoscaler_state = replace(deployment.autoscaler_state, skip_stabilisation_once=True)
        changed = sorted(changes)  # names only: a token's value never reaches the record
        await self._recorder.event(deployment, "updated", f"Spec updated: {', '.join(changed) or 'nothing'}"
                                   + (" (immediate scale-down)" if change.immediate_scale_down else ""),
                                   {"fields": changed}, by_user=True)
        reshaped = needs_new_replicas_for(deployment, old, spec)
        if reshaped and self._leading():
            self._replicas.reshape(deployment)  # the loop starts replacements; each ready one retires an old one
        if deployment.status is DeploymentStatus.failed:
            await self._start_afresh(deployment, "Trying again after a spec change")
        self._nudge()

    async def add_adapter(self, deployment: LiveDeployment, adapter: AdapterSpec) -> None:
        """Add a LoRA adapter and load it on every ready replica now. When an engine refuses it (a path it
        cannot read, a rank above its limit), the adapter is taken out again and the refusal raised: the
        spec never lists an adapter its running replicas refused. Without a ready replica (paused, or
        replicas being replaced), new replicas start with it."""
        if any(a.name == adapter.name for a in deployment.spec.adapters):
            raise ApiError(409, f"Deployment {deployment.name} already has an adapter named {adapter.name!r}.",
                           code="duplicate_adapter", param="name")
        for replica in deployment.replicas.values():
            replica.adapter_failures.pop(adapter.source, None)  # asked again: try again
        await self.update(deployment, DeploymentUpdate(adapters=[*deployment.spec.adapters, adapter]))
        if not self._leading():
            return  # the leader loads it when it reads the row
        refused = (await self._adapters.sync(deployment)).get(adapter.name)
        if refused is not None:
            await self.remove_adapter(deployment, adapter.name)
            raise ApiError(422, f"Adapter {adapter.name} was refused by the engine and not added: {refused}",
                           code="adapter_refused", param="source")

    async def remove_adapter(self, deployment: LiveDeployment, name: str) -> None:
        """Take a LoRA adapter out of the spec and unload it from every ready replica now."""
        kept = [a for a in deployment.spec.adapters if a.name != name]
        if len(kept) == len(deployment.spec.adapters):
            raise ApiError(404, f"Deployment {deployment.name} has no adapter named {name!r}.",
                           code="adapter_not_found", param="name")
        await self.update(deployment, DeploymentUpdate(adapters=kept))
        await self._recorder.forget_adapter_usage(deployment, name)
        if self._leading():
            await self._adapters.sync(deployment)

    async def stop(self, deployment: LiveDeployment) -> None:
        """Stopped by the user: every replica goes, requests get a clear error, nothing wakes it but `resume`."""
        deployment.status_reason = "stopped by the user"
        await self._recorder.set_status(deployment, DeploymentStatus.stopped, by_user=True)
        await self._stop_replicas(deployment)

    async def resume(self, deployment: LiveDeployment) -> None:
        """Back under the loop's care with a fresh start: failures and autoscaler memory forgotten."""
        await self._start_afresh(deployment, "Resumed by the user")
        self._nudge()

    async def _start_afresh(self, deployment: LiveDeployment, message: str) -> None:
        """At once, whatever a failed deployment's retry backoff says."""
        deployment.fresh_start(self._clock.now())
        await self._recorder.set_status(deployment, DeploymentStatus.provisioning, by_user=True)
        await self._recorder.event(deployment, "resumed", message, {}, by_user=True)

    async def delete(self, deployment: LiveDeployment) -> None:
        await self._recorder.set_status(deployment, DeploymentStatus.deleted, by_user=True)
        self._fleet.remove(deployment.id)
        if self._leading():
            await self._replicas.remove(deployment)
        else:
            deployment.notify()  # held requests here get their clear error now; the leader removes the replicas

    async def _stop_replicas(self, deployment: LiveDeployment) -> None:
        if self._leading():
            await self._replicas.stop_all(deployment)
        else:
            deployment.notify()  # held requests here get their clear error now; the leader stops the replicas
