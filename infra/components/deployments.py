"""Every declared deployment as a resource of the control plane (the dynamic provider), on any target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from deployment_resource import InferenceDeployment, InferenceDeploymentArgs
from inferstack.spec import DeploymentSpec


@dataclass(frozen=True)
class DeclaredDeploymentsArgs:
    url: pulumi.Input[str]
    specs: Sequence[DeploymentSpec]
    hf_token: pulumi.Input[str] | None = None


class DeclaredDeployments(pulumi.ComponentResource):
    """One `inferstack:Deployment` per declared spec, named `<component>-<deployment name>`."""

    deployments: dict[str, InferenceDeployment]

    def __init__(self, name: str, args: DeclaredDeploymentsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:platform:DeclaredDeployments", name, None, opts)
        self.deployments = {}
        for spec in args.specs:
            assert spec.name, "stack validation requires a name"
            self.deployments[spec.name] = InferenceDeployment(
                f"{name}-{spec.name}",
                InferenceDeploymentArgs(url=args.url, spec=spec, hf_token=args.hf_token),
                pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({
            "deployment_ids": {n: d.deployment_id for n, d in self.deployments.items()},
        })
