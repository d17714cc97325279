"""The AWS replica group of a deployment, described once for both sides that build it.

The Pulumi program declares the groups of the deployments in a stack (`infra/components/aws_replicas.py`);
the `aws` provider creates the groups of deployments made through the REST API and drives all of them
(`providers/aws.py`). Both render the same description from here: group names, the spot / on-demand
split, the group settings, tag keys, the SSM names of the launch documents and the launch-template lookup.
A boot script on an instance reads the same names (`infra/components/replica.py`).

One owner per resource. A deployment declared in the stack file has its groups and launch document
created by Pulumi, under the plain names (`inferstack-<stack>-<deployment>-<capacity>`,
`<prefix>/<deployment>`); the controller only scales them, and waits for them to exist. A deployment
made through the REST API has its groups and document created by the controller, under names with
`api.` before the deployment name, which Pulumi never uses (a deployment name cannot contain a dot).
So neither side ever creates a name the other creates next.

Pure data: no boto3, no Pulumi. Values known only at deploy time (a declared deployment's id, a launch
template's id) pass through untouched as `V`: `str` for the provider, a Pulumi `Output[str]` for the program.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from inferstack.spec import DeploymentSpec

V = TypeVar("V")

Capacity = Literal["spot", "on-demand"]
Owner = Literal["pulumi", "controller"]
CONTROLLER_MARK = "api."
"""Before the deployment name in every name the controller creates; names cannot contain a dot."""

# --- tag keys -------------------------------------------------------------------------------------------------
STACK_TAG = "inferstack:stack"
"""On every resource of a stack; the controller's IAM policy is conditioned on it."""
DEPLOYMENT_TAG = "inferstack:deployment"
"""The deployment's name."""
DOCUMENT_TAG = "inferstack:document"
"""The boot script reads this instance tag to find its launch document: `<prefix>/<this tag>`."""
OWNER_TAG = "inferstack:owner"
"""Who created the group: `pulumi` (a declared deployment) or `controller` (made through the API)."""
DEPLOYMENT_ID_TAG = "inferstack:deployment-id"
CAPACITY_TAG = "inferstack:capacity"
PROFILE_TAG = "inferstack:profile"
"""On a launch template: the hardware profile it launches."""
REPLICA_TAG = "inferstack:replica"
"""On a claimed instance: the replica it serves (set by the provider, never by Pulumi)."""
DIGEST_TAG = "inferstack:launch-digest"
"""Which launch document a claimed instance was claimed under, so a later claim can tell a stale one."""

# --- the replica instance -------------------------------------------------------------------------------------
REPLICA_LOG_PATH = "/var/log/inferstack-replica.log"
"""Where the boot script logs on the instance (and to its console)."""


def replica_log_group(stack: str) -> str:
    """The CloudWatch log group of a stack's replicas: one stream per instance, named by its id."""
    return f"/inferstack/{stack}/replicas"


def replica_log_stream(stack: str, instance_id: str) -> str:
    """Where a replica's output is, as its record names it: `cloudwatch:<group>:<stream>`."""
    return f"cloudwatch:{replica_log_group(stack)}:{instance_id}"

LAUNCH_TEMPLATE_VERSION = "$Latest"
"""Groups follow the template's newest version: a new AMI or boot script reaches the next instance."""

# --- group settings -------------------------------------------------------------------------------------------
HEALTH_CHECK_TYPE = "EC2"
HEALTH_CHECK_GRACE_PERIOD_S = 900
"""Cold start (image pull, weights download, load) takes minutes before /health answers."""
SPOT_ALLOCATION_STRATEGY = "price-capacity-optimized"


@dataclass(frozen=True)
class ReplicaGroup(Generic[V]):
    """One Auto Scaling group of a deployment's replicas, as both sides create it."""

    name: str
    capacity: Capacity
    max_size: int
    declared_desired_capacity: int
    """What Pulumi creates a declared deployment's group with (it ignores the count afterwards: the
    controller owns it). The provider creates its groups empty and grows them one claim at a time."""
    launch_template_id: V
    instance_type: str
    tags: Mapping[str, str | V]
    """Propagated to the instances the group launches."""
    min_size: int = 0
    protect_from_scale_in: bool = True
    """The controller picks which replica goes (drained first); the group must not pick."""
    health_check_type: str = HEALTH_CHECK_TYPE
    health_check_grace_period_s: int = HEALTH_CHECK_GRACE_PERIOD_S
    on_demand_base_capacity: int = 0
    spot_allocation_strategy: str = SPOT_ALLOCATION_STRATEGY
    launch_template_version: str = LAUNCH_TEMPLATE_VERSION

    @property
    def spot(self) -> bool:
        return self.capacity == "spot"

    @property
    def on_demand_percentage_above_base_capacity(self) -> int:
        return 0 if self.spot else 100

    @property
    def capacity_rebalance(self) -> bool:
        """Spot groups replace an instance that gets a rebalance recommendation before it is interrupted."""
        return self.spot


def capacities(spec: DeploymentSpec) -> list[Capacity]:
    """The groups of a deployment, in the order they are grown: spot first when the spec allows it,
    on-demand as the fallback when spot capacity does not come."""
    return ["spot", "on-demand"] if spec.allow_spot else ["on-demand"]


def owner_of(deployment: str, declared: Collection[str]) -> Owner:
    """Who creates a deployment's groups and launch document: Pulumi if the stack declares it."""
    return "pulumi" if deployment in declared else "controller"


def document_key(deployment: str, owner: Owner) -> str:
    """The last part of the launch document's name, and of the group names."""
    return deployment if owner == "pulumi" else CONTROLLER_MARK + deployment


def group_name(stack: str, deployment: str, capacity: Capacity, owner: Owner = "pulumi") -> str:
    return f"inferstack-{stack}-{document_key(deployment, owner)}-{capacity}"


def controller_group_pattern(stack: str) -> str:
    """Every group name the controller may create (an IAM resource pattern)."""
    return f"inferstack-{stack}-{CONTROLLER_MARK}*"


def replica_groups(stack: str, deployment: str, spec: DeploymentSpec, *, deployment_id: V,
                   launch_template_id: V, instance_type: str, owner: Owner = "pulumi") -> list[ReplicaGroup[V]]:
    """The groups of one deployment, in the order they are grown. `instance_type` is the spec's
    (`aws_instance_type`); it overrides the template's default, which is the smallest in use."""
    grown = capacities(spec)
    return [ReplicaGroup(
        name=group_name(stack, deployment, capacity, owner), capacity=capacity, max_size=spec.max_replicas,
        declared_desired_capacity=spec.min_replicas if capacity == grown[0] else 0,
        launch_template_id=launch_template_id, instance_type=instance_type,
        tags={STACK_TAG: stack, DEPLOYMENT_TAG: deployment, DEPLOYMENT_ID_TAG: deployment_id,
              CAPACITY_TAG: capacity, OWNER_TAG: owner, DOCUMENT_TAG: document_key(deployment, owner)},
    ) for capacity in grown]


# --- launch documents -----------------------------------------------------------------------------------------
PARAMETER_TYPE = "String"
PARAMETER_TIER = "Standard"


def parameter_prefix(stack: str) -> str:
    """The SSM path under which a stack's launch documents live."""
    return f"/inferstack/{stack}/deployments"


def parameter_name(prefix: str, key: str) -> str:
    """The SSM parameter holding a launch document (the JSON of `engines.container`); `key` is the
    deployment's `document_key`."""
    return f"{prefix}/{key}"


def launch_document_name(prefix: str, deployment: str, owner: Owner) -> str:
    return parameter_name(prefix, document_key(deployment, owner))


# --- launch templates -----------------------------------------------------------------------------------------
class MissingLaunchTemplate(LookupError):
    """The stack has no launch template for a hardware profile."""


def launch_template_id(templates: Mapping[str, V], profile: str, stack: str) -> V:
    """The launch template of a hardware profile. Pulumi creates one per profile in use by a declared
    deployment; a deployment created through the API on another profile cannot be launched."""
    found = templates.get(profile)
    if found is None:
        known = ", ".join(sorted(templates)) or "none"
        raise MissingLaunchTemplate(
            f"hardware profile {profile!r} has no launch template in stack {stack!r} (it has: {known}); "
            "declare a deployment on it in the stack and run `pulumi up` to create one")
    return found
