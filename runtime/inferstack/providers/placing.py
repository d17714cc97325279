"""A provider over several: each replica goes where `placement.placement_order` says, bursting past
the full ones. What `inferstack serve` runs (with one provider as with several)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from inferstack.providers.base import PoolFull, Provider, ProviderError, ReplicaHandle, remove_deployment, serving
from inferstack.providers.placement import PlacementError, placement_order
from inferstack.spec import DeploymentSpec

log = logging.getLogger("inferstack.providers.placing")


class PlacingProvider:
    def __init__(self, providers: dict[str, Provider]) -> None:
        """`providers`: name -> provider, in the control plane's placement order."""
        self._providers = providers
        self._placed: dict[str, str] = {}  # replica id -> provider name

    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle:
        try:
            order = placement_order(spec.providers, spec.cloudburst, list(self._providers))
        except PlacementError as exc:
            raise ProviderError(str(exc)) from None
        full: list[str] = []
        for rank, provider in enumerate(order):
            try:
                handle = await self._providers[provider].start(deployment_id, name, replica_id, spec, replica_api_key)
            except PoolFull as exc:
                log.info("replica %s of %s: %s is full (%s)", replica_id, name, provider, exc)
                full.append(f"{provider}: {exc}")
                continue
            self._placed[replica_id] = provider
            return dataclasses.replace(handle, provider=provider, burst=rank > 0)
        hint = "" if spec.cloudburst else " (cloudburst is off)"
        raise ProviderError("no provider has room" + hint + ": " + "; ".join(full))

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        provider = self._placed.get(handle.replica_id)
        return None if provider is None else self._providers[provider].exit_code(handle)

    def serving(self, handle: ReplicaHandle) -> bool:
        provider = self._placed.get(handle.replica_id)
        return provider is None or serving(self._providers[provider], handle)

    async def remove_deployment(self, deployment_id: str, name: str) -> None:
        await asyncio.gather(*(remove_deployment(p, deployment_id, name) for p in self._providers.values()))

    async def stop(self, handle: ReplicaHandle) -> None:
        provider = self._placed.pop(handle.replica_id, None)
        if provider is not None:
            await self._providers[provider].stop(handle)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self._providers.values()))

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        """Each provider finds its own (a replica id is tagged in one place only)."""
        adopted: list[ReplicaHandle] = []
        for provider_name, provider in self._providers.items():
            for handle in await provider.adopt(deployment_id, name, spec, replica_ids):
                self._placed[handle.replica_id] = provider_name
                adopted.append(dataclasses.replace(handle, provider=provider_name))
        return adopted

    async def hand_over(self) -> bool:
        """True only if every provider's replicas outlive this process: the rows of the ones that do not
        must be marked stopped (the next leader adopts running cloud instances whatever their rows say)."""
        kept = await asyncio.gather(*(p.hand_over() for p in self._providers.values()))
        return all(kept)
