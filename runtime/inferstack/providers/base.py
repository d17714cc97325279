"""Where replicas run. One small interface; the controller never knows which provider it drives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from inferstack.spec import DeploymentSpec


@dataclass(frozen=True)
class ReplicaHandle:
    replica_id: str
    url: str
    pid: int | None
    log_path: str
    api_key: str | None = None
    """The key the replica checks, when the provider keeps one per deployment (Kubernetes: all pods of a
    Deployment share its Secret) rather than the one `start` was given."""
    provider: str | None = None
    """Where it runs (`kubernetes`, `aws`, `local`), set by placement."""
    burst: bool = False
    """Placed past the deployment's first provider because that one was full: the first to go."""

    @property
    def on_this_machine(self) -> bool:
        """A child process of the control plane (the local provider), reading the files it reads."""
        return self.provider in (None, "local")


class ProviderError(Exception):
    """A replica could not be started; the message is shown to the user as the reason."""


class PoolFull(ProviderError):
    """The provider has no room for another replica now (e.g. Kubernetes pods stay unschedulable):
    placement tries the next provider."""


class Provider(Protocol):
    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle: ...

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        """The replica's exit code once it has exited on its own, else None."""
        ...

    async def stop(self, handle: ReplicaHandle) -> None: ...

    async def close(self) -> None:
        """Stop every replica this provider started."""
        ...

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        """The replicas an earlier leader recorded live that still run here (found by the replica id they
        were tagged with at their start): this process holds them from now on. None for replicas that
        die with their control plane."""
        ...

    async def hand_over(self) -> bool:
        """Another control plane takes over: stop the replicas only if they cannot outlive this process.
        True if they keep running (for the next leader to adopt)."""
        ...


# --- what only some providers can do -----------------------------------------------------------------


@runtime_checkable
class ReportsReadiness(Protocol):
    def serving(self, handle: ReplicaHandle) -> bool:
        """Whether the platform the replica runs on says it takes requests now (Kubernetes: its pod's Ready
        condition). Cheap: answered from what the provider last saw, as `exit_code` is."""
        ...


@runtime_checkable
class MakesDeploymentObjects(Protocol):
    async def remove_deployment(self, deployment_id: str, name: str) -> None:
        """The deployment is deleted and its replicas stopped: delete what this provider made for it (and
        nothing of another deployment). Never raises: a failure is logged."""
        ...


def serving(provider: object, handle: ReplicaHandle) -> bool:
    """The provider's word on whether the replica takes requests; True from one that cannot tell."""
    return provider.serving(handle) if isinstance(provider, ReportsReadiness) else True


async def remove_deployment(provider: object, deployment_id: str, name: str) -> None:
    if isinstance(provider, MakesDeploymentObjects):
        await provider.remove_deployment(deployment_id, name)
