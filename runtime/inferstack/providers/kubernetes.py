"""The `kubernetes` provider: replicas are pods of a Deployment of the deployment's replicas.

The Deployment is the one the Pulumi program declares (`replicas-<name>`), or else one this provider
creates (`kubernetes_pods.replica_deployment`, `replicas-<name>-<shape digest>`): after a reshaping
update the new replicas go to a new one while the old shape's pods serve until the controller retires
them one by one. The controller keeps
choosing which replica starts and which leaves; the provider turns that into the Deployment's count:

- `start` makes sure the Deployment and its Secret exist, adds one to `spec.replicas` through the
  `scale` subresource (unless an unclaimed pod is already there, e.g. after a restart of the
  control plane), then claims one unclaimed pod and waits for its IP: the replica's address is the
  pod IP and the container port named `http`. A pod the scheduler cannot place for
  `unschedulable_timeout_s` means the pool is full: it is given back and `PoolFull` raised, which
  placement (providers/placement.py) answers by bursting to the next provider.
- `stop` (after the controller drained the replica) marks exactly that pod with the lowest
  `controller.kubernetes.io/pod-deletion-cost` and takes one from `spec.replicas`: the ReplicaSet
  removes that pod and no other.
- `exit_code` answers from a pod cache that a background list refreshes (at most every `poll_s`):
  a claimed pod that failed, was evicted or deleted, is stuck (ImagePullBackOff...) or whose
  container ended (OOMKilled, a crash) is exited; the reason goes to the replica's log file (what
  the controller's event quotes), and the pod is given back so the next start gets a fresh one.
- `serving` answers from the same cache: whether the claimed pod is Ready. The controller routes only to
  replicas whose pod is Ready (the ReplicaSet's own view: a not-Ready pod is the first it removes).
- `adopt` (a new leader) holds the running pods annotated with the replica ids the earlier leader
  recorded, under those ids: nothing is started, stopped or claimed again. `hand_over` leaves every pod
  and replica count as it is for that.
- `remove_deployment` (a deleted deployment) deletes the Deployments this provider made for it and its
  Secret; a declared Deployment is the stack's and stays.
- `close` scales every Deployment it drove to 0: a stopped control plane leaves nothing running.

The replicas' API key and the deployment's Hugging Face token live in the Secret
`replicas-<name>` (or the platform's token Secret); pods reference them, never hold them in clear.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import ApiError
from pydantic import BaseModel, ConfigDict, Field

from inferstack.clock import Clock
from inferstack.engines.container import DEFAULT_RUNTIME_IMAGE, DEFAULT_VLLM_IMAGE, REPLICA_PORT
from inferstack.providers.base import PoolFull, ProviderError, ReplicaHandle
from inferstack.providers.kubernetes_cluster import KubernetesCluster, is_not_found
from inferstack.providers.kubernetes_pods import (
    DEPLOYMENT_ID_ANNOTATION,
    DEPLOYMENT_LABEL,
    KEY_SECRET_KEY,
    REPLICA_ANNOTATION,
    SHAPE_LABEL,
    PodSettings,
    PodView,
    own_deployment_name,
    pod_failure,
    read_pod,
    replica_deployment,
    replica_deployment_name,
    replica_secret,
    replica_secret_name,
    scheduling,
)
from inferstack.providers.refresher import BackgroundRefresh
from inferstack.settings import Env, Settings
from inferstack.spec import DeploymentSpec

log = logging.getLogger("inferstack.providers.kubernetes")


class KubernetesProviderConfig(BaseModel):
    """The provider's part of `Settings` (written by infra/components/kubernetes.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(min_length=1)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                description="Hardware profile -> nodeSelector, tolerations.")
    model_cache_claim: str | None = None
    hf_token_secret: str | None = None
    vllm_image: str = DEFAULT_VLLM_IMAGE
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    replica_port: int = REPLICA_PORT

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesProviderConfig:
        k8s = settings.kubernetes
        if k8s.namespace is None:
            raise ValueError(f"kubernetes provider: {Env.K8S_NAMESPACE} is not set")
        profiles: dict[str, dict[str, Any]] = {}
        if k8s.profiles_file is not None:
            try:
                profiles = json.loads(k8s.profiles_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"kubernetes provider: {Env.K8S_PROFILES} ({k8s.profiles_file}): {exc}") from None
        images = settings.replica_images
        return cls(namespace=k8s.namespace, profiles=profiles, model_cache_claim=k8s.model_cache_claim,
                   hf_token_secret=k8s.hf_token_secret, vllm_image=images.vllm_image or DEFAULT_VLLM_IMAGE,
                   runtime_image=images.runtime_image or DEFAULT_RUNTIME_IMAGE)

    def pod_settings(self, profile: str) -> PodSettings:
        return PodSettings(namespace=self.namespace, vllm_image=self.vllm_image, runtime_image=self.runtime_image,
                           placement=self.profiles.get(profile) or scheduling([profile])[profile],
                           model_cache_claim=self.model_cache_claim, hf_token_secret=self.hf_token_secret,
                           port=self.replica_port)


@dataclass
class _Claim:
    name: str
    deployment: str
    pod: str
    restarts: int
    log_path: Path


class KubernetesProvider:
    """Replicas as pods of the deployment's replica Deployment (see the module docstring)."""

    def __init__(self, config: KubernetesProviderConfig, cluster: KubernetesCluster, clock: Clock, log_dir: Path, *,
                 poll_s: float = 1.0, unschedulable_timeout_s: float = 60.0, start_timeout_s: float = 600.0) -> None:
        self._config = config
        self._cluster = cluster
        self._clock = clock
        self._log_dir = log_dir
        self._poll_s = poll_s
        self._unschedulable_timeout_s = unschedulable_timeout_s
        self._start_timeout_s = start_timeout_s
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._starting: defaultdict[str, int] = defaultdict(int)  # replica Deployment -> starts not yet claimed
        self._claims: dict[str, _Claim] = {}  # replica id -> its pod
        self._exited: set[str] = set()  # replica ids whose pod failed
        self._pods: dict[str, PodView] = {}  # pod name -> what the last list said
        self._driven: set[str] = set()  # replica Deployments this provider scaled
        self._removed: set[str] = set()  # deleted deployments (ids): a start still on its way makes nothing
        self._refresher = BackgroundRefresh(clock, poll_s, self._refresh_and_reap, "kubernetes-provider-refresh")

    # --- Provider --------------------------------------------------------------------------------------
    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle:
        if self._refresher.stopped:
            raise ProviderError("the kubernetes provider is closed")
        if deployment_id in self._removed:
            raise ProviderError("the deployment is deleted")
        log_path = self._log_path(replica_id)
        try:
            async with self._locks[name]:
                # The key stays (running pods check it); a new Hugging Face token is written for new pods.
                secret = replica_secret(name, self._config.namespace, replica_api_key, spec)
                stored = await self._cluster.ensure_secret(secret, keep=frozenset({KEY_SECRET_KEY}))
                deployment, selector = await self._replica_deployment(spec, deployment_id, name)
                self._driven.add(deployment)
                await self.refresh()
                # Unclaimed pods are adopted (one left by an earlier control plane), but not those that
                # other starts in flight scaled up for and are about to claim.
                if len(self._claimable(selector)) <= self._starting[deployment]:
                    await self._cluster.scale(deployment, await self._cluster.replicas(deployment) + 1)
                self._starting[deployment] += 1
            try:
                claim = await self._claim(name, deployment, selector, replica_id, log_path)
            finally:
                self._starting[deployment] -= 1
            try:
                view = await self._await_address(claim, replica_id)
            except BaseException:
                await self._release(replica_id, "start abandoned")
                raise
        except ProviderError:
            raise
        except Exception as exc:  # the API refused or could not be reached: the reason is the user's to see
            raise ProviderError(f"Kubernetes: {exc}") from exc
        assert view.address is not None
        _note(log_path, f"pod {view.name} at {view.address}")
        log.info("replica %s of %s is pod %s (%s)", replica_id, name, view.name, view.address)
        return ReplicaHandle(replica_id=replica_id, url=view.address, pid=None, log_path=str(log_path),
                             api_key=stored.get(KEY_SECRET_KEY) or replica_api_key)

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        """1 once the replica's pod failed or went (see the module docstring), else None. Cheap: answers
        from the cache and at most schedules one background list, no more often than every `poll_s`."""
        self._refresher.schedule()
        return 1 if handle.replica_id in self._exited else None

    async def stop(self, handle: ReplicaHandle) -> None:
        """Remove exactly the replica's pod. Never raises: a failure is logged (the pod stays counted)."""
        claim = self._claims.pop(handle.replica_id, None)
        if claim is not None:
            await self._give_back(claim, "stopped")

    def serving(self, handle: ReplicaHandle) -> bool:
        """Whether the replica's pod is Ready, from the cache (see `exit_code`). A replica this provider does
        not hold is not its to judge: True."""
        claim = self._claims.get(handle.replica_id)
        if claim is None:
            return True
        self._refresher.schedule()
        view = self._pods.get(claim.pod)
        return view is not None and view.ready

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        """The pods of `name` annotated with one of `replica_ids` (at their claim) that still run: an earlier
        leader's replicas, held from now on under the same ids, neither restarted nor claimed again. A pod
        that failed, is leaving or has no IP is not kept (its replica is recorded stopped; a later start may
        claim the pod, or it is given back)."""
        if self._refresher.stopped or not replica_ids:
            return []
        wanted = set(replica_ids) - set(self._claims)
        handles = []
        try:
            async with self._locks[name]:
                await self.refresh()
                declared = await self._cluster.selector(replica_deployment_name(name))
                for view in self._pods.values():
                    replica_id, deployment = view.replica_id, _owner(view, name, declared)
                    if (replica_id is None or replica_id not in wanted or deployment is None or view.address is None
                            or view.deleting or view.leaving or view.stuck):
                        continue
                    log_path = self._log_path(replica_id)
                    self._claims[replica_id] = _Claim(name=name, deployment=deployment, pod=view.name,
                                                      restarts=view.restarts, log_path=log_path)
                    self._driven.add(deployment)
                    _note(log_path, f"kept pod {view.name} of {deployment} at {view.address} (new leader)")
                    log.info("keeping replica %s: pod %s of %s (%s)", replica_id, view.name, deployment, view.address)
                    handles.append(ReplicaHandle(replica_id=replica_id, url=view.address, pid=None,
                                                 log_path=str(log_path)))
        except Exception as exc:  # the API refused or could not be reached: the replicas are replaced
            log.warning("could not look for the running replicas of %s (they are replaced): %s", name, exc)
        return handles

    async def hand_over(self) -> bool:
        """Pods outlive this process: leave them (and the Deployments' replica counts) for the next
        leader, which keeps them under their replica ids (`adopt`)."""
        await self._stop_refreshing()
        await self._cluster.close()
        return True

    async def remove_deployment(self, deployment_id: str, name: str) -> None:
        """Delete the Deployments this provider made for the deployment `deployment_id` (their pods go with
        them) and the Secret with its key and token. The stack's declared Deployment stays, and so does
        the Secret while another deployment's Deployment of the same name uses it."""
        self._removed.add(deployment_id)
        try:
            async with self._locks[name]:
                others = False
                for found in await self._cluster.deployments({DEPLOYMENT_LABEL: name}):
                    meta = found.get("metadata") or {}
                    if SHAPE_LABEL not in (meta.get("labels") or {}):
                        continue  # declared: the stack's
                    if (meta.get("annotations") or {}).get(DEPLOYMENT_ID_ANNOTATION) != deployment_id:
                        others = True
                        continue
                    await self._cluster.delete_deployment(meta["name"])
                    self._driven.discard(meta["name"])
                    log.info("deleted Deployment %s of deleted deployment %s", meta["name"], name)
                if not others:
                    await self._cluster.delete_secret(replica_secret_name(name))
        except Exception as exc:  # the controller cannot handle a failed delete: log it, loudly
            log.error("could not delete the Kubernetes objects of deployment %s: %s", name, exc)

    async def close(self) -> None:
        await self._stop_refreshing()
        for deployment in sorted(self._driven):
            try:
                await self._cluster.scale(deployment, 0)
            except Exception as exc:  # closing: log and go on with the others
                log.error("could not scale %s to 0: %s", deployment, exc)
        await self._cluster.close()

    def _log_path(self, replica_id: str) -> Path:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return self._log_dir / f"{replica_id}.log"

    async def _stop_refreshing(self) -> None:
        await self._refresher.stop()
        self._claims.clear()

    # --- claiming a pod --------------------------------------------------------------------------------
    async def _replica_deployment(self, spec: DeploymentSpec, deployment_id: str, name: str
                                  ) -> tuple[str, dict[str, str]]:
        """The Deployment new replicas of `spec` go to, and its pod selector: the declared one if the
        stack has it, else the provider's own for this pod shape (created on first use)."""
        declared = replica_deployment_name(name)
        selector = await self._cluster.selector(declared)
        if selector is not None:
            return declared, selector
        manifest = replica_deployment(spec, deployment_id, name, self._config.pod_settings(spec.hardware_profile))
        own = manifest["metadata"]["name"]
        if await self._cluster.selector(own) is None:
            await self._cluster.create(manifest)
        return own, manifest["spec"]["selector"]["matchLabels"]

    def _claimable(self, selector: dict[str, str]) -> list[PodView]:
        held = {c.pod for c in self._claims.values()}
        return [p for p in self._pods.values() if selector.items() <= p.labels.items() and p.name not in held
                and not (p.deleting or p.leaving or p.stuck)]

    async def _claim(self, name: str, deployment: str, selector: dict[str, str], replica_id: str,
                     log_path: Path) -> _Claim:
        deadline = self._clock.now() + self._start_timeout_s
        while True:
            async with self._locks[name]:
                await self.refresh()
                # Ready pods first (one left by an earlier control plane serves at once), then the oldest.
                free = sorted(self._claimable(selector), key=lambda p: (not p.ready, p.address is None))
                if free:
                    pod = free[0]
                    try:
                        await self._cluster.annotate(pod.name, {REPLICA_ANNOTATION: replica_id})
                    except ApiError as exc:  # deleted since the list (e.g. a scale-down): take another
                        if not is_not_found(exc):
                            raise
                    else:
                        claim = _Claim(name=name, deployment=deployment, pod=pod.name, restarts=pod.restarts,
                                       log_path=log_path)
                        self._claims[replica_id] = claim
                        _note(log_path, f"claimed pod {pod.name} of {deployment}")
                        return claim
                else:  # the pod this start counted on went (a give-back's scale-down took it): ask again
                    held = self._starting[deployment] + sum(c.deployment == deployment for c in self._claims.values())
                    if await self._cluster.replicas(deployment) < held:
                        await self._cluster.scale(deployment, held)
            if self._clock.now() > deadline:
                raise ProviderError(f"no pod of {deployment} appeared within {self._start_timeout_s:g} s")
            await self._clock.sleep(self._poll_s)

    async def _await_address(self, claim: _Claim, replica_id: str) -> PodView:
        """Wait for the claimed pod's IP; give it back when it cannot be placed or will not start."""
        started = self._clock.now()
        unschedulable_since: float | None = None
        while True:
            view = self._pods.get(claim.pod)
            problem = None if view is None else pod_failure(view, claim.restarts)
            if view is not None and view.address and problem is None:
                return view
            now = self._clock.now()
            if view is not None and view.unschedulable:
                unschedulable_since = now if unschedulable_since is None else unschedulable_since
                if now - unschedulable_since >= self._unschedulable_timeout_s:
                    await self._release(replica_id, f"Unschedulable: {view.unschedulable}")
                    raise PoolFull(f"no room in the cluster for a {claim.deployment} pod: Unschedulable for "
                                   f"{now - unschedulable_since:g} s ({view.unschedulable})")
            else:
                unschedulable_since = None
            if view is None or problem is not None or now - started > self._start_timeout_s:
                reason = problem or ("pod gone before it started" if view is None
                                     else f"no pod IP within {self._start_timeout_s:g} s")
                await self._release(replica_id, reason)
                raise ProviderError(f"pod {claim.pod}: {reason}")
            await self._clock.sleep(self._poll_s)
            await self.refresh()

    async def _release(self, replica_id: str, reason: str) -> None:
        claim = self._claims.pop(replica_id, None)
        if claim is not None:
            await self._give_back(claim, reason)

    async def _give_back(self, claim: _Claim, reason: str) -> None:
        """The pod leaves the Deployment: lowest deletion cost, then one replica fewer."""
        _note(claim.log_path, f"pod {claim.pod}: {reason}")
        try:
            async with self._locks[claim.name]:
                view = self._pods.get(claim.pod)
                if view is not None and not view.deleting:
                    await self._cluster.mark_leaving(claim.pod)
                replicas = await self._cluster.replicas(claim.deployment)
                await self._cluster.scale(claim.deployment, max(0, replicas - 1))
        except Exception as exc:  # the controller cannot handle a failed stop: log it, loudly
            log.error("could not remove pod %s of %s: %s", claim.pod, claim.deployment, exc)

    # --- the pod cache ---------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """List the replica pods once (one call for the namespace) and update the cache."""
        self._refresher.refreshed()
        self._pods = {view.name: view for view in map(read_pod, await self._cluster.replica_pods())}

    async def _refresh_and_reap(self) -> None:
        try:
            await self.refresh()
            for replica_id, claim in list(self._claims.items()):
                view = self._pods.get(claim.pod)
                reason = "pod gone (evicted or deleted)" if view is None else pod_failure(view, claim.restarts)
                if reason is not None and self._claims.pop(replica_id, None) is not None:
                    self._exited.add(replica_id)
                    await self._give_back(claim, reason)
        except Exception as exc:  # a background task: log and let the next refresh try again
            log.warning("could not refresh replica pods: %s", exc)


def _owner(view: PodView, name: str, declared: dict[str, str] | None) -> str | None:
    """The Deployment a pod of deployment `name` belongs to: the provider's own for the pod's shape, else
    the declared one when its selector matches; None for a pod of another deployment."""
    if view.labels.get(DEPLOYMENT_LABEL) != name:
        return None
    if SHAPE_LABEL in view.labels:
        return own_deployment_name(name, view.labels[SHAPE_LABEL])
    return replica_deployment_name(name) if declared is not None and declared.items() <= view.labels.items() else None


def _note(path: Path, line: str) -> None:
    """The replica's log on the control plane: what happened to its pod (the controller quotes its tail)."""
    with path.open("a") as file:
        file.write(line + "\n")
