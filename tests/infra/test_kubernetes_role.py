"""The dev stack's Role grants exactly what the `kubernetes` provider calls: the provider runs its
whole life (create, scale up, a crash, scale down, delete, close) against the emulator, every request it makes
is recorded, and the set of (group, resource, verb) is compared with the Role the stack renders."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kubernetes_validate
from program_harness import Program

from inferstack.clock import SystemClock
from inferstack.providers.kubernetes import KubernetesProvider, KubernetesProviderConfig
from inferstack.providers.kubernetes_cluster import KubernetesCluster
from inferstack.spec import DeploymentSpec
from kube_cluster import Cluster, free_port_everywhere, running_cluster

SPEC = DeploymentSpec(hf_model_id="inferstack/sim-chat", engine="sim", hardware_profile="cpu", name="chat")


async def provider_lifetime(cluster: Cluster, log_dir: Path) -> None:
    config = KubernetesProviderConfig(namespace="inferstack-dev", replica_port=free_port_everywhere())
    client = cluster.client(log_dir, "inferstack-dev")
    k8s = KubernetesProvider(config, KubernetesCluster(client, "inferstack-dev"), SystemClock(), log_dir, poll_s=0.05)
    try:
        first = await k8s.start("dep-1", "chat", "rep-1", SPEC, "k")
        second = await k8s.start("dep-1", "chat", "rep-2", SPEC, "k")
        pod = next(p["metadata"]["name"] for p in cluster.kubelet.pods()
                   if p["metadata"]["annotations"].get("inferstack.io/replica-id") == "rep-2")
        await cluster.on_cluster(cluster.kubelet.kill(pod))
        for _ in range(400):
            if k8s.exit_code(second) is not None:
                break
            await asyncio.sleep(0.05)
        assert k8s.exit_code(second) == 1
        await k8s.stop(first)
        # A new Hugging Face token for the deployment: new pods read it from the Secret.
        third = await k8s.start("dep-1", "chat", "rep-3", SPEC.with_changes({"hf_token": "hf_new"}), "k")
        await k8s.stop(third)
        await k8s.remove_deployment("dep-1", "chat")  # the deployment is deleted
    finally:
        await k8s.close()


def test_the_role_grants_exactly_what_the_provider_calls(dev: Program, tmp_path: Path) -> None:
    with running_cluster(tmp_path / "pods") as cluster:
        asyncio.run(provider_lifetime(cluster, tmp_path / "logs"))
        called = {(c.group, c.resource, c.verb) for c in cluster.emulator.calls}
        # What the provider created is valid to the real API too (strict: no unknown field).
        # Deleted ones too: as they were last.
        sent = [o.last.raw for (r, _, _), o in cluster.emulator.objects.items()
                if r.plural in ("deployments", "secrets")]
        assert {o["kind"] for o in sent} == {"Deployment", "Secret"}
        for manifest in sent:
            kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    (role,) = dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    granted = {(group, resource, verb) for rule in role["inputs"]["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert called == granted
