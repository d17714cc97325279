"""The Kubernetes API calls of the `kubernetes` provider, through lightkube's async client.

Every call the provider makes is here, so the Role the stack renders can be checked against them
(tests/providers/test_kubernetes_role.py records them on the emulator). Objects go in and come out
as the API's own JSON dicts; the decisions about them are `kubernetes_pods`' and the provider's.
"""

from __future__ import annotations

import base64
from typing import Any

from lightkube import ApiError, AsyncClient, KubeConfig, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import CascadeType, PatchType

from inferstack.providers.kubernetes_pods import DELETION_COST, LEAVING_COST, ROLE_LABEL


def client_from_environment() -> AsyncClient:
    """In a pod: its service account; elsewhere: the kubeconfig named by KUBECONFIG (or ~/.kube/config)."""
    return AsyncClient(config=KubeConfig.from_env(), timeout=30)


def is_not_found(exc: Exception) -> bool:
    return isinstance(exc, ApiError) and exc.status.code == 404


class KubernetesCluster:
    """One namespace of one cluster."""

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._client = client
        self.namespace = namespace

    async def close(self) -> None:
        await self._client.close()

    # --- the replica Deployment and its Secret ----------------------------------------------------------
    async def ensure_secret(self, manifest: dict[str, Any], keep: frozenset[str]) -> dict[str, str]:
        """The Secret's data (decoded) after making sure it exists: created from `manifest`, or the
        existing one with `manifest`'s values written over it except for the keys in `keep`."""
        name = manifest["metadata"]["name"]
        try:
            found = await self._client.get(Secret, name, namespace=self.namespace)
        except ApiError as exc:
            if not is_not_found(exc):
                raise
            await self._client.create(codecs.from_dict(manifest), namespace=self.namespace)
            return dict(manifest["stringData"])
        data = {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
        changed = {k: v for k, v in manifest["stringData"].items() if k not in keep and data.get(k) != v}
        if changed:
            await self._client.patch(Secret, name, {"stringData": changed}, namespace=self.namespace,
                                     patch_type=PatchType.MERGE)
        return data | changed

    async def selector(self, deployment: str) -> dict[str, str] | None:
        """The Deployment's pod selector (matchLabels), or None if there is no such Deployment."""
        try:
            found = await self._client.get(Deployment, deployment, namespace=self.namespace)
        except ApiError as exc:
            if not is_not_found(exc):
                raise
            return None
        return dict(found.spec.selector.matchLabels or {}) if found.spec and found.spec.selector else {}

    async def deployments(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [d.to_dict() async for d in self._client.list(Deployment, namespace=self.namespace, labels=labels)]

    async def delete_deployment(self, deployment: str) -> None:
        """In the background: the cluster's garbage collector removes its ReplicaSets and their pods."""
        await self._client.delete(Deployment, deployment, namespace=self.namespace, cascade=CascadeType.BACKGROUND)

    async def delete_secret(self, name: str) -> None:
        """Gone already is fine."""
        try:
            await self._client.delete(Secret, name, namespace=self.namespace)
        except ApiError as exc:
            if not is_not_found(exc):
                raise

    async def create(self, manifest: dict[str, Any]) -> None:
        await self._client.create(codecs.from_dict(manifest), namespace=self.namespace)

    async def replicas(self, deployment: str) -> int:
        scale = await self._client.get(Deployment.Scale, deployment, namespace=self.namespace)
        return int(scale.spec.replicas or 0) if scale.spec else 0

    async def scale(self, deployment: str, replicas: int) -> None:
        """Through the `scale` subresource, so nothing else of the Deployment (the template) is touched."""
        await self._client.patch(Deployment.Scale, deployment, {"spec": {"replicas": replicas}},
                                 namespace=self.namespace, patch_type=PatchType.MERGE)

    # --- pods ----------------------------------------------------------------------------------------
    async def replica_pods(self) -> list[dict[str, Any]]:
        """Every replica pod of the namespace (one list call for all deployments)."""
        return [pod.to_dict() async for pod in self._client.list(Pod, namespace=self.namespace, labels=ROLE_LABEL)]

    async def annotate(self, pod: str, annotations: dict[str, str]) -> None:
        await self._client.patch(Pod, pod, {"metadata": {"annotations": annotations}}, namespace=self.namespace,
                                 patch_type=PatchType.MERGE)

    async def mark_leaving(self, pod: str) -> None:
        """The lowest deletion cost: on the next scale-down the ReplicaSet removes this pod, no other."""
        await self.annotate(pod, {DELETION_COST: LEAVING_COST})
