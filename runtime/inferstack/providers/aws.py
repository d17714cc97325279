"""The `aws` provider: replicas are EC2 GPU instances in per-deployment Auto Scaling groups.

The controller's replica decisions become capacity changes of the deployment's groups, named
`inferstack-<stack>-<deployment>-on-demand` (and `-spot` when the spec allows spot), the same groups
the Pulumi program creates for declared deployments (`infra/components/aws_replicas.py`); the
provider creates them, from the profile's launch template, for deployments created through the API.

An instance finds out what to run by itself: the launch template's boot script reads the deployment
name from the instance's `inferstack:deployment` tag (propagated by its group) and the deployment's
launch document from SSM `<parameter prefix>/<deployment>`, the same JSON `infra` writes.

- `start` makes sure the groups exist, writes the launch document if SSM holds another, then
  claims an instance for the replica: an unclaimed one already in the group if there is one
  (capacity the group launched by itself: Pulumi's first `desired_capacity`, a replacement for an
  instance lost out of band, a replica of a control plane that died without `close`; one running an
  outdated document or instance type is terminated instead), else one more unit of desired
  capacity (spot group first, on-demand after `capacity_timeout_s`). The claimed instance is
  tagged `inferstack:replica=<replica id>`; its private IP is the replica's URL.
- `exit_code` answers from a cache that a background describe refreshes (at most every `poll_s`).
- `stop` terminates exactly the replica's instance and decrements the group's desired capacity.
- `close` terminates every instance this provider still holds, so the groups it drove are back at
  0 (see `AwsProvider.close` for why).

The replica API key is not used: AWS replicas are guarded by their security group, which admits
the replica port only from the control plane. The key is never written anywhere (not in SSM, tags,
user data or the launch template), and the launch document carries no secret at all: the Hugging
Face token is fetched from Secrets Manager by the boot script.

Every blocking boto3 call runs in a thread (`asyncio.to_thread`); the clients are created once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferstack.clock import Clock
from inferstack.engines.container import launch_document
from inferstack.providers.base import ProviderError, ReplicaHandle
from inferstack.settings import Env, Settings
from inferstack.spec import DeploymentSpec
from inferstack.stackfile import REPLICA_PORT, PlatformSettings, aws_instance_type

log = logging.getLogger("inferstack.providers.aws")

STACK_TAG = "inferstack:stack"
DEPLOYMENT_TAG = "inferstack:deployment"
"""The boot script reads this instance tag to find its launch document: it must be the deployment name."""
DEPLOYMENT_ID_TAG = "inferstack:deployment-id"
CAPACITY_TAG = "inferstack:capacity"
REPLICA_TAG = "inferstack:replica"
DIGEST_TAG = "inferstack:launch-digest"
"""Which launch document a claimed instance was claimed under, so a later claim can tell a stale one."""

"""Variables that only ever come from a secret store; never written into a launch document."""

# Auto Scaling lifecycle states of an instance that is, or is about to be, in service.
LIVE_LIFECYCLE = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
ALIVE_EC2 = frozenset({"pending", "running"})
GONE = "gone"
"""Cache state of an instance that EC2 no longer reports at all."""
EXITED_EC2 = frozenset({"shutting-down", "terminated", "stopping", "stopped", GONE})
DESCRIBE_FILTER_LIMIT = 200  # EC2 accepts at most 200 values in one filter


# --- naming ----------------------------------------------------------------------------------------


def group_name(stack: str, deployment: str, capacity: str) -> str:
    """The same name `infra/components/aws_replicas.py` gives a declared deployment's group."""
    return f"inferstack-{stack}-{deployment}-{capacity}"


def capacities(spec: DeploymentSpec) -> list[str]:
    """The groups of a deployment, in the order they are grown."""
    return ["spot", "on-demand"] if spec.allow_spot else ["on-demand"]


def _digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()[:16]


# --- settings ---------------------------------------------------------------------------------------------


class AwsProviderConfig(BaseModel):
    """What the control plane needs to know about its stack's AWS resources, built from `Settings`
    (whose variables `infra/components/aws_control_plane.py` writes). Credentials are not here: boto3 finds
    them (the ECS task role in production, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = Field(min_length=1)
    endpoint_url: str | None = Field(None, description="An AWS-compatible endpoint (moto in tests).")
    stack: str = Field(min_length=1)
    launch_templates: dict[str, str] = Field(description="Hardware profile -> launch template id.")
    subnets: list[str] = Field(min_length=1, description="Private subnets of new replica groups.")
    parameter_prefix: str = Field(min_length=2, description="SSM path of the launch documents.")
    vllm_image: str = Field(min_length=1)
    runtime_image: str = Field(min_length=1)

    @field_validator("parameter_prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError(f"must start with '/' and not end with it, got {value!r}")
        return value

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsProviderConfig:
        """The provider's part of the settings; a missing or malformed one names its variable.
        The images default to the stack file's, the parameter prefix to infra's for the stack."""
        aws = settings.aws
        missing = [name for name, value in ((f"{Env.AWS_REGION} or {Env.AWS_DEFAULT_REGION}", aws.region),
                                            (Env.STACK, aws.stack), (Env.AWS_LAUNCH_TEMPLATES, aws.launch_templates),
                                            (Env.AWS_SUBNETS, aws.subnets)) if value is None]
        if missing:
            raise ValueError("aws provider: " + "; ".join(f"{name} is not set" for name in missing))
        images = settings.replica_images
        try:
            return cls(
                region=aws.region, endpoint_url=aws.endpoint_url, stack=aws.stack,
                launch_templates=aws.launch_templates, subnets=aws.subnets,
                parameter_prefix=aws.parameter_prefix or f"/inferstack/{aws.stack}/deployments",
                vllm_image=images.vllm_image or PlatformSettings.model_fields["vllm_image"].default,
                runtime_image=images.runtime_image or PlatformSettings.model_fields["image"].default,
            )
        except ValidationError as exc:
            described = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"aws provider: {described}") from exc


# --- the provider -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    replica_id: str
    instance_id: str
    group: str


class AwsProvider:
    """Replicas as EC2 instances in the deployment's Auto Scaling groups (see the module docstring).

    `poll_s`: how often a start polls for its instance, and the most an `exit_code` answer may lag.
    `capacity_timeout_s`: how long spot capacity may take before the on-demand group is grown.
    `launch_timeout_s`: how long the last group (on-demand) may take to produce an instance.
    """

    def __init__(self, config: AwsProviderConfig, clock: Clock, *, poll_s: float = 2.0,
                 capacity_timeout_s: float = 120.0, launch_timeout_s: float = 600.0) -> None:
        self._config = config
        self._clock = clock
        self._poll_s = poll_s
        self._capacity_timeout_s = capacity_timeout_s
        self._launch_timeout_s = launch_timeout_s
        session = boto3.session.Session(region_name=config.region)
        retries = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30)
        self._asg = session.client("autoscaling", endpoint_url=config.endpoint_url, config=retries)
        self._ec2 = session.client("ec2", endpoint_url=config.endpoint_url, config=retries)
        self._ssm = session.client("ssm", endpoint_url=config.endpoint_url, config=retries)
        self._claims: dict[str, _Claim] = {}  # replica id -> its instance
        self._failed_stops: dict[str, _Claim] = {}  # replica id -> an instance whose termination failed
        self._reserved: set[str] = set()  # instance ids claimed, or being claimed, by this provider
        self._states: dict[str, str] = {}  # instance id -> last known EC2 state (or GONE)
        # Read-modify-write of a group's desired capacity happens under its lock (no lost updates
        # between a start and a concurrent drain's stop); the slow waits happen outside it.
        self._group_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Starts of this process waiting for an instance of the group, so that capacity the group is
        # launching on its own is told apart from capacity one of our own starts asked for.
        self._waiting: defaultdict[str, int] = defaultdict(int)
        self._refreshed_at = float("-inf")
        self._refresh_task: asyncio.Task[None] | None = None
        self._closed = False

    # --- Provider ------------------------------------------------------------------------------------
    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle:
        """Claim an instance for the replica (adopting an unclaimed one, else growing the group) and
        return its handle. On any failure, raises ProviderError and leaves desired capacity as it was.
        `replica_api_key` is deliberately unused (see the module docstring)."""
        if self._closed:
            raise ProviderError("the aws provider is closed")
        template = self._config.launch_templates.get(spec.hardware_profile)
        if template is None:
            known = ", ".join(sorted(self._config.launch_templates)) or "none"
            raise ProviderError(
                f"hardware profile {spec.hardware_profile!r} has no launch template in stack "
                f"{self._config.stack!r} (it has: {known}); declare a deployment on it in the stack and run "
                "`pulumi up` to create one")
        instance_type = aws_instance_type(spec.hardware_profile, spec.gpus_per_replica)
        if instance_type is None:
            raise ProviderError(f"no EC2 instance type offers {spec.gpus_per_replica} x {spec.profile.gpu}")
        document = launch_document(spec, deployment_id, name, self._config.vllm_image, self._config.runtime_image)
        groups = [group_name(self._config.stack, name, c) for c in capacities(spec)]
        try:
            # Groups first: a bad template or subnet then fails before anything else is written.
            for capacity, group in zip(capacities(spec), groups, strict=True):
                await self._ensure_group(group, capacity, spec, deployment_id, name, template, instance_type)
            rewritten = await self._ensure_document(name, document)
            claim, instance = await self._claim(replica_id, groups, _digest(document), rewritten, instance_type)
        except (ClientError, BotoCoreError) as exc:
            raise ProviderError(f"AWS: {exc}") from exc
        self._claims[replica_id] = claim
        self._states[claim.instance_id] = instance["State"]["Name"]
        address = instance["PrivateIpAddress"]
        log.info("replica %s of %s is instance %s in %s (%s)", replica_id, name, claim.instance_id, claim.group,
                 address)
        # pid None: nothing runs here. log_path names where the replica logs (on the instance), not a local file.
        return ReplicaHandle(replica_id=replica_id, url=f"http://{address}:{REPLICA_PORT}", pid=None,
                             log_path=f"ec2://{claim.instance_id}/var/log/inferstack-replica.log")

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        """1 once the replica's instance is stopping, stopped, terminated or gone, else None.

        Cheap (the controller asks every tick): answers from the cache and at most schedules one
        background describe of all held instances, no more often than every `poll_s`."""
        claim = self._claims.get(handle.replica_id)
        if claim is None:
            return None
        self._schedule_refresh()
        return 1 if self._states.get(claim.instance_id) in EXITED_EC2 else None

    async def stop(self, handle: ReplicaHandle) -> None:
        """Terminate exactly this replica's instance and decrement its group's desired capacity.

        Tolerates an instance that is already gone. Never raises: an AWS failure is logged and the
        termination retried by the next background refresh and by `close` (the controller has no
        way to handle a failed stop, and the instance must not be forgotten while it bills)."""
        claim = self._claims.pop(handle.replica_id, None)
        if claim is None:
            return
        try:
            await self._terminate(claim)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not stop instance %s of replica %s (will retry): %s", claim.instance_id,
                      claim.replica_id, exc)
            self._failed_stops[claim.replica_id] = claim

    async def close(self) -> None:
        """Terminate every instance this provider holds: the groups it drove go back to 0.

        Why not leave cloud replicas running across a control-plane restart? The controller's
        contract is that a stopped control plane leaves nothing running (`Controller.stop`), and on
        start it marks earlier replicas orphaned and starts new ones; instances kept by a closing
        control plane would bill with nobody routing to them whenever no control plane comes back
        (e.g. `pulumi destroy` of API-created groups, which Pulumi does not know). So close() is the
        local contract, scoped to what this process holds: it terminates exactly the instances it
        claimed (with decrement), and leaves an instance another control plane has since claimed
        (its `inferstack:replica` tag no longer ours), so the old task of an ECS rolling deployment
        cannot take down the new task's replicas. A control plane that dies without close() loses no
        capacity and leaks nothing: the next one's `start` adopts the running, unclaimed instances.
        """
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        claims = [*self._claims.values(), *self._failed_stops.values()]
        self._claims.clear()
        self._failed_stops.clear()
        alive = [c for c in claims if self._states.get(c.instance_id) not in EXITED_EC2]
        results = await asyncio.gather(*(self._terminate(c) for c in alive), return_exceptions=True)
        for claim, result in zip(alive, results, strict=True):
            if isinstance(result, BaseException):
                log.error("could not terminate instance %s of replica %s: %s", claim.instance_id,
                          claim.replica_id, result)

    # --- start, step by step -------------------------------------------------------------------------
    async def _ensure_group(self, group: str, capacity: str, spec: DeploymentSpec, deployment_id: str, name: str,
                            template: str, instance_type: str) -> None:
        """Create the group unless it exists: empty, from the profile's launch template, configured
        like `infra/components/aws_replicas.py` (mixed-instances policy with the spec's instance type,
        the controller picks scale-in victims, capacity rebalancing on spot).

        An existing group launching from another template or instance type (the deployment's hardware
        profile or GPU count was updated) is pointed at the right ones: its new instances must be the
        new shape, while the old replicas drain."""
        spot = capacity == "spot"
        launch = {"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Latest"},
                  "Overrides": [{"InstanceType": instance_type}]}
        distribution = {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0 if spot else 100,
                        "SpotAllocationStrategy": "price-capacity-optimized"}
        described = await self._describe_group(group)
        if described is not None:
            policy = described.get("MixedInstancesPolicy") or {}
            current = policy.get("LaunchTemplate", {})
            if (current.get("LaunchTemplateSpecification", {}).get("LaunchTemplateId") != template
                    or [o.get("InstanceType") for o in current.get("Overrides", [])] != [instance_type]):
                log.info("pointing %s at launch template %s, %s", group, template, instance_type)
                await self._call(self._asg.update_auto_scaling_group, AutoScalingGroupName=group,
                                 MixedInstancesPolicy={"LaunchTemplate": launch, "InstancesDistribution":
                                                       policy.get("InstancesDistribution", distribution)})
            return
        tags = {STACK_TAG: self._config.stack, DEPLOYMENT_TAG: name, DEPLOYMENT_ID_TAG: deployment_id,
                CAPACITY_TAG: capacity}
        try:
            await self._call(
                self._asg.create_auto_scaling_group,
                AutoScalingGroupName=group, MinSize=0, MaxSize=spec.max_replicas, DesiredCapacity=0,
                VPCZoneIdentifier=",".join(self._config.subnets),
                MixedInstancesPolicy={"LaunchTemplate": launch, "InstancesDistribution": distribution},
                # Cold start (image pull, weights download, load) takes minutes before /health answers.
                HealthCheckType="EC2", HealthCheckGracePeriod=900,
                NewInstancesProtectedFromScaleIn=True, CapacityRebalance=spot,
                Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": group,
                       "ResourceType": "auto-scaling-group"} for k, v in tags.items()],
            )
            log.info("created Auto Scaling group %s", group)
        except ClientError as exc:
            if _code(exc) != "AlreadyExists":  # another control plane created it first: fine
                raise

    async def _ensure_document(self, name: str, document: str) -> bool:
        """Write the launch document unless SSM already holds exactly it; True if it was (re)written."""
        parameter = f"{self._config.parameter_prefix}/{name}"
        try:
            current = await self._call(self._ssm.get_parameter, Name=parameter)
            if current["Parameter"]["Value"] == document:
                return False
        except ClientError as exc:
            if _code(exc) != "ParameterNotFound":
                raise
        await self._call(self._ssm.put_parameter, Name=parameter, Value=document, Type="String", Tier="Standard",
                         Overwrite=True)
        return True

    async def _claim(self, replica_id: str, groups: list[str], digest: str, rewritten: bool,
                     instance_type: str) -> tuple[_Claim, dict[str, Any]]:
        """An instance for the replica: adopt an unclaimed one, else grow the groups in order."""
        before: dict[str, set[str]] = {}
        for group in groups:
            described = await self._describe_group(group)
            members = (described or {}).get("Instances", [])
            before[group] = {m["InstanceId"] for m in members}
            live = [m["InstanceId"] for m in members if m["LifecycleState"] in LIVE_LIFECYCLE]
            found = await self._adoptable(group, live, digest, rewritten, instance_type)
            if found is not None:
                log.info("adopting unclaimed instance %s of %s", found["InstanceId"], group)
                return await self._take(replica_id, group, found, digest)

        for index, group in enumerate(groups):
            last = index == len(groups) - 1
            raised = await self._grow(group)  # counts this start in self._waiting[group]
            try:
                found = await self._await_new_instance(
                    group, before[group], self._launch_timeout_s if last else self._capacity_timeout_s)
                if found is not None:
                    try:
                        return await self._take(replica_id, group, found, digest)
                    except BaseException:
                        if raised:  # the instance exists only for this start: end it, with the capacity it took
                            raised = False
                            with contextlib.suppress(ClientError, BotoCoreError):
                                await self._terminate(_Claim(replica_id, found["InstanceId"], group))
                        raise
            except BaseException:  # an AWS error or the controller's cancellation: undo the growth
                if raised:
                    await self._shrink_quietly(group)
                raise
            finally:
                self._waiting[group] -= 1
            if raised:
                await self._shrink_quietly(group)
            if not last:
                log.info("no instance in %s within %g s; trying %s", group, self._capacity_timeout_s, groups[-1])
        waited = self._launch_timeout_s + self._capacity_timeout_s * (len(groups) - 1)
        raise ProviderError(f"no EC2 instance came up in {' or '.join(groups)} within {waited:g} s "
                            "(no capacity for the instance type, or the launch failed: see the group's activity)")

    async def _adoptable(self, group: str, ids: list[str], digest: str, rewritten: bool,
                         instance_type: str) -> dict[str, Any] | None:
        """The first live, unclaimed instance among `ids` that runs the current launch document.

        An instance claimed under another document, never claimed while the document was just
        rewritten, or of another instance type, runs an outdated spec: nobody routes to it, so it is
        terminated (with decrement)."""
        candidates = [i for i in ids if i not in self._reserved]
        if not candidates:
            return None
        instances = await self._describe_instances(candidates)
        for instance_id in candidates:
            instance = instances.get(instance_id)
            if instance is None or instance["State"]["Name"] not in ALIVE_EC2 or instance_id in self._reserved:
                continue
            tags = _tags(instance)
            stale = (tags[DIGEST_TAG] != digest if DIGEST_TAG in tags else rewritten) or (
                instance.get("InstanceType") != instance_type)
            if stale:
                log.warning("terminating unclaimed instance %s of %s: it runs an outdated launch document",
                            instance_id, group)
                await self._terminate(_Claim("", instance_id, group))
                continue
            if instance.get("PrivateIpAddress"):
                return instance
        return None

    async def _grow(self, group: str) -> bool:
        """Desired capacity + 1, unless capacity nobody waits for is already on its way (the group is
        replacing an instance lost out of band: desired exceeds its live members plus what our other
        starts wait for). True if it was raised; either way the caller now waits for one instance."""
        async with self._group_locks[group]:
            described = await self._describe_group(group)
            if described is None:
                raise ProviderError(f"Auto Scaling group {group} disappeared")
            desired = described["DesiredCapacity"]
            live = sum(1 for m in described["Instances"] if m["LifecycleState"] in LIVE_LIFECYCLE)
            coming = desired - live - self._waiting[group]
            self._waiting[group] += 1
            if coming > 0:
                return False
            grow: asyncio.Future[Any] | None = None
            try:
                if desired + 1 > described["MaxSize"]:
                    # Draining replicas still hold instances while their successors start (a spec update
                    # replaces every replica): the controller, not the group, bounds the count.
                    await self._call(self._asg.update_auto_scaling_group, AutoScalingGroupName=group,
                                     MaxSize=desired + 1)
                # Shielded: a cancelled await does not stop the request in its thread, so on cancellation
                # wait for its outcome and take the unit back if it landed (else capacity would leak).
                grow = asyncio.ensure_future(self._call(self._asg.set_desired_capacity, AutoScalingGroupName=group,
                                                        DesiredCapacity=desired + 1, HonorCooldown=False))
                await asyncio.shield(grow)
            except BaseException as exc:
                self._waiting[group] -= 1
                if isinstance(exc, asyncio.CancelledError) and grow is not None:
                    try:
                        await grow
                        await self._call(self._asg.set_desired_capacity, AutoScalingGroupName=group,
                                         DesiredCapacity=desired, HonorCooldown=False)
                    except Exception as undo:
                        log.error("could not take back the capacity asked of %s: %s", group, undo)
                raise
            return True

    async def _shrink_quietly(self, group: str) -> None:
        """Undo a `_grow`: desired capacity - 1. Best effort, it runs while another error propagates."""
        try:
            async with self._group_locks[group]:
                described = await self._describe_group(group)
                if described is not None and described["DesiredCapacity"] > 0:
                    await self._call(self._asg.set_desired_capacity, AutoScalingGroupName=group,
                                     DesiredCapacity=described["DesiredCapacity"] - 1, HonorCooldown=False)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not lower the desired capacity of %s back: %s", group, exc)

    async def _await_new_instance(self, group: str, before: set[str], timeout_s: float) -> dict[str, Any] | None:
        """Poll (with the injected clock) until an instance that was not in the group before shows up
        alive, unclaimed and with a private IP; None after `timeout_s`."""
        deadline = self._clock.now() + timeout_s
        while True:
            described = await self._describe_group(group)
            fresh = [m["InstanceId"] for m in (described or {}).get("Instances", [])
                     if m["LifecycleState"] in LIVE_LIFECYCLE and m["InstanceId"] not in before
                     and m["InstanceId"] not in self._reserved]
            if fresh:
                instances = await self._describe_instances(fresh)
                for instance_id in fresh:
                    instance = instances.get(instance_id)
                    if (instance is not None and instance_id not in self._reserved
                            and instance["State"]["Name"] in ALIVE_EC2 and instance.get("PrivateIpAddress")):
                        return instance
            if self._clock.now() >= deadline:
                return None
            await self._clock.sleep(self._poll_s)

    async def _take(self, replica_id: str, group: str, instance: dict[str, Any],
                    digest: str) -> tuple[_Claim, dict[str, Any]]:
        """Reserve the instance (synchronously, so two concurrent starts never take the same one),
        then tag it as this replica's."""
        instance_id = instance["InstanceId"]
        self._reserved.add(instance_id)
        claim = _Claim(replica_id, instance_id, group)
        try:
            await self._call(self._ec2.create_tags, Resources=[instance_id],
                             Tags=[{"Key": REPLICA_TAG, "Value": replica_id}, {"Key": DIGEST_TAG, "Value": digest}])
        except BaseException:
            self._reserved.discard(instance_id)
            raise
        return claim, instance

    # --- stopping ------------------------------------------------------------------------------------
    async def _terminate(self, claim: _Claim) -> None:
        """Terminate the claim's instance with decrement; tolerate it being gone already.

        An instance that has left its group out of band (spot interruption, manual terminate) is
        still counted in desired capacity, and the group would launch a replacement nobody asked
        for: the controller stopped this replica, so the count goes down by one instead."""
        instance_id = claim.instance_id
        async with self._group_locks[claim.group]:
            instance = (await self._describe_instances([instance_id])).get(instance_id)
            owner = _tags(instance).get(REPLICA_TAG) if instance is not None else None
            if claim.replica_id and owner not in (None, claim.replica_id):
                log.info("instance %s now belongs to replica %s; leaving it", instance_id, owner)
                self._reserved.discard(instance_id)
                return
            described = await self._describe_group(claim.group)
            member = next((m for m in (described or {}).get("Instances", []) if m["InstanceId"] == instance_id),
                          None)
            if member is not None and member["LifecycleState"] in LIVE_LIFECYCLE:
                try:
                    await self._call(self._asg.terminate_instance_in_auto_scaling_group, InstanceId=instance_id,
                                     ShouldDecrementDesiredCapacity=True)
                except ClientError as exc:
                    if _code(exc) != "ValidationError":  # "not found": it left the group meanwhile
                        raise
            else:
                if described is not None and described["DesiredCapacity"] > 0 and claim.replica_id:
                    await self._call(self._asg.set_desired_capacity, AutoScalingGroupName=claim.group,
                                     DesiredCapacity=described["DesiredCapacity"] - 1, HonorCooldown=False)
                if instance is not None and instance["State"]["Name"] in ALIVE_EC2:
                    await self._call(self._ec2.terminate_instances, InstanceIds=[instance_id])  # detached
        self._states[instance_id] = "terminated"
        self._reserved.discard(instance_id)

    # --- the exit-code cache -------------------------------------------------------------------------
    def _schedule_refresh(self) -> None:
        if self._closed or (self._refresh_task is not None and not self._refresh_task.done()):
            return
        if self._clock.now() - self._refreshed_at < self._poll_s:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: answer from the cache alone
            return
        self._refreshed_at = self._clock.now()
        self._refresh_task = loop.create_task(self.refresh(), name="aws-provider-refresh")

    async def refresh(self) -> None:
        """Describe every held instance once and update the cache `exit_code` reads; retry the
        terminations that failed earlier. Errors are logged: the next refresh tries again."""
        self._refreshed_at = self._clock.now()
        try:
            for replica_id, claim in list(self._failed_stops.items()):
                await self._terminate(claim)
                self._failed_stops.pop(replica_id, None)
            watched = sorted({c.instance_id for c in self._claims.values()
                              if self._states.get(c.instance_id) not in EXITED_EC2})
            if not watched:
                return
            found = await self._describe_instances(watched)
            for instance_id in watched:
                instance = found.get(instance_id)
                self._states[instance_id] = instance["State"]["Name"] if instance is not None else GONE
        except Exception as exc:  # a background task: log and let the next refresh try again
            log.warning("could not refresh replica instance states: %s", exc)

    # --- AWS calls -----------------------------------------------------------------------------------
    async def _describe_group(self, group: str) -> dict[str, Any] | None:
        found = await self._call(self._asg.describe_auto_scaling_groups, AutoScalingGroupNames=[group])
        groups = found["AutoScalingGroups"]
        return groups[0] if groups else None

    async def _describe_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Instances by id; an id EC2 does not know is simply absent. (A filter, not InstanceIds:
        with InstanceIds one unknown id fails the whole call.)"""

        def describe() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            paginator = self._ec2.get_paginator("describe_instances")
            for start in range(0, len(ids), DESCRIBE_FILTER_LIMIT):
                chunk = ids[start:start + DESCRIBE_FILTER_LIMIT]
                for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": chunk}]):
                    for reservation in page["Reservations"]:
                        for instance in reservation["Instances"]:
                            out[instance["InstanceId"]] = instance
            return out

        return await asyncio.to_thread(describe) if ids else {}

    @staticmethod
    async def _call(function: Callable[..., Any], **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, **kwargs)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _tags(instance: Mapping[str, Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (instance or {}).get("Tags", [])}
