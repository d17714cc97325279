"""The `aws` provider: replicas are EC2 GPU instances in per-deployment Auto Scaling groups.

The controller's replica decisions become capacity changes of the deployment's groups: the groups
`aws_groups` describes (`-on-demand`, and `-spot` when the spec allows spot). Each has one owner
(`aws_groups.owner_of`): a deployment the stack declares (INFERSTACK_AWS_DECLARED_DEPLOYMENTS) has its
groups and launch document created by Pulumi (`infra/components/aws_replicas.py`), and the provider
only scales them; one made through the API has them created by the provider, under `api.` names.

An instance finds out what to run by itself: the launch template's boot script reads the
`inferstack:document` tag (propagated by its group) and the launch document at SSM
`<parameter prefix>/<that tag>`.

- `start` waits for a declared deployment's groups and document, or makes sure an API-made one's
  exist (writing the document if SSM holds another), then claims an instance for the replica
  (`aws_claims`: adopt an unclaimed one, else grow a group). Its private IP is the replica's URL.
- `exit_code` answers from a cache that a background describe refreshes (at most every `poll_s`).
- `stop` terminates exactly the replica's instance and decrements the group's desired capacity.
- `close` leaves every instance running, for the next control plane to adopt (see `AwsProvider.close`).

The replica API key is not used: AWS replicas are guarded by their security group, which admits
the replica port only from the control plane. The key is never written anywhere (not in SSM, tags,
user data or the launch template), and the launch document carries no secret at all: the Hugging
Face token is fetched from Secrets Manager by the boot script.

The boto3 calls are `aws_cloud`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, get_args

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferstack.clock import Clock
from inferstack.engines.container import DEFAULT_RUNTIME_IMAGE, DEFAULT_VLLM_IMAGE, REPLICA_PORT, launch_document
from inferstack.hardware import aws_instance_type
from inferstack.providers.aws_claim_rules import EXITED_EC2, GONE, Claim, launch_digest
from inferstack.providers.aws_claims import InstanceClaims
from inferstack.providers.aws_cloud import AwsCloud
from inferstack.providers.aws_groups import (
    Capacity,
    MissingLaunchTemplate,
    Owner,
    ReplicaGroup,
    group_name,
    launch_document_name,
    launch_template_id,
    owner_of,
    parameter_prefix,
    replica_groups,
    replica_log_stream,
)
from inferstack.providers.base import ProviderError, ReplicaHandle
from inferstack.providers.refresher import BackgroundRefresh
from inferstack.settings import Env, Settings
from inferstack.spec import DeploymentSpec

log = logging.getLogger("inferstack.providers.aws")


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
    declared: frozenset[str] = Field(frozenset(), description="Deployments whose groups Pulumi creates.")

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
                parameter_prefix=aws.parameter_prefix or parameter_prefix(aws.stack),
                vllm_image=images.vllm_image or DEFAULT_VLLM_IMAGE,
                runtime_image=images.runtime_image or DEFAULT_RUNTIME_IMAGE,
                declared=frozenset(aws.declared_deployments),
            )
        except ValidationError as exc:
            described = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"aws provider: {described}") from exc


# --- the provider -----------------------------------------------------------------------------------------


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
        self._cloud = AwsCloud(config.region, config.endpoint_url)
        self._instances = InstanceClaims(self._cloud, clock, poll_s=poll_s, capacity_timeout_s=capacity_timeout_s,
                                         launch_timeout_s=launch_timeout_s)
        self._claims: dict[str, Claim] = {}  # replica id -> its instance
        self._failed_stops: dict[str, Claim] = {}  # replica id -> an instance whose termination failed
        self._states: dict[str, str] = {}  # instance id -> last known EC2 state (or GONE)
        self._refresher = BackgroundRefresh(clock, poll_s, self.refresh, "aws-provider-refresh")

    # --- Provider ------------------------------------------------------------------------------------
    async def start(
        self, deployment_id: str, name: str, replica_id: str, spec: DeploymentSpec, replica_api_key: str
    ) -> ReplicaHandle:
        """Claim an instance for the replica (adopting an unclaimed one, else growing the group) and
        return its handle. On any failure, raises ProviderError and leaves desired capacity as it was.
        `replica_api_key` is deliberately unused (see the module docstring)."""
        if self._refresher.stopped:
            raise ProviderError("the aws provider is closed")
        groups, instance_type, owner = self._groups(deployment_id, name, spec)
        parameter = launch_document_name(self._config.parameter_prefix, name, owner)
        try:
            if owner == "pulumi":
                # Pulumi creates these right after the deployment: wait for them, never create them.
                document = await self._instances.await_declared([g.name for g in groups], parameter)
                rewritten = False
            else:
                document = launch_document(spec, deployment_id, name, self._config.vllm_image,
                                           self._config.runtime_image)
                # Groups first: a bad template or subnet then fails before anything else is written.
                for group in groups:
                    await self._cloud.ensure_group(group, self._config.subnets)
                rewritten = await self._cloud.ensure_document(parameter, document)
            claim, instance = await self._instances.claim(replica_id, [g.name for g in groups],
                                                          launch_digest(document), rewritten, instance_type)
        except (ClientError, BotoCoreError) as exc:
            raise ProviderError(f"AWS: {exc}") from exc
        return self._hold(claim, instance, name)

    async def adopt(self, deployment_id: str, name: str, spec: DeploymentSpec,
                    replica_ids: list[str]) -> list[ReplicaHandle]:
        """The instances of the deployment's groups tagged with one of `replica_ids` (at their claim) that
        still run: an earlier leader's replicas, kept under their ids, neither restarted nor re-tagged."""
        if self._refresher.stopped or not replica_ids:
            return []
        try:
            groups, _, _ = self._groups(deployment_id, name, spec)
            found = await self._instances.find_tagged([g.name for g in groups], set(replica_ids))
        except (ProviderError, ClientError, BotoCoreError) as exc:
            log.warning("could not look for the running replicas of %s (they are replaced): %s", name, exc)
            return []
        return [self._hold(claim, instance, name) for claim, instance in found]

    def _hold(self, claim: Claim, instance: dict[str, Any], name: str) -> ReplicaHandle:
        self._claims[claim.replica_id] = claim
        self._states[claim.instance_id] = instance["State"]["Name"]
        address = instance["PrivateIpAddress"]
        log.info("replica %s of %s is instance %s in %s (%s)", claim.replica_id, name, claim.instance_id,
                 claim.group, address)
        # pid None: nothing runs here. log_path names where the replica's output is kept (its CloudWatch
        # stream, readable after the instance is gone), not a local file.
        return ReplicaHandle(replica_id=claim.replica_id, url=f"http://{address}:{REPLICA_PORT}", pid=None,
                             log_path=replica_log_stream(self._config.stack, claim.instance_id))

    def _groups(self, deployment_id: str, name: str,
                spec: DeploymentSpec) -> tuple[list[ReplicaGroup[str]], str, Owner]:
        """The deployment's groups, the instance type its replicas run on, and who owns the groups."""
        try:
            template = launch_template_id(self._config.launch_templates, spec.hardware_profile, self._config.stack)
        except MissingLaunchTemplate as exc:
            raise ProviderError(str(exc)) from None
        # The deployment's own choice (checked by the spec to hold its GPUs), else the profile's smallest.
        instance_type = (spec.instance_types[0] if spec.instance_types
                         else aws_instance_type(spec.hardware_profile, spec.gpus_per_replica))
        if instance_type is None:
            raise ProviderError(f"no EC2 instance type offers {spec.gpus_per_replica} x {spec.profile.gpu}")
        owner = owner_of(name, self._config.declared)
        groups = replica_groups(self._config.stack, name, spec, deployment_id=deployment_id,
                                launch_template_id=template, instance_type=instance_type, owner=owner)
        return groups, instance_type, owner

    def exit_code(self, handle: ReplicaHandle) -> int | None:
        """1 once the replica's instance is stopping, stopped, terminated or gone, else None.

        Cheap (the controller asks every tick): answers from the cache and at most schedules one
        background describe of all held instances, no more often than every `poll_s`."""
        claim = self._claims.get(handle.replica_id)
        if claim is None:
            return None
        self._refresher.schedule()
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
            await self._instances.release(claim)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not stop instance %s of replica %s (will retry): %s", claim.instance_id,
                      claim.replica_id, exc)
            self._failed_stops[claim.replica_id] = claim

    async def remove_deployment(self, deployment_id: str, name: str) -> None:
        """Delete the groups and the launch document this provider made for the deleted deployment
        `deployment_id`; a declared deployment's are Pulumi's and stay. Its replicas are stopped by now: an
        instance still in a group (one no replica held) goes with it. Never raises: a failure is logged."""
        if owner_of(name, self._config.declared) == "pulumi":
            return
        try:
            deleted = [await self._cloud.delete_group(group_name(self._config.stack, name, capacity, "controller"),
                                                      deployment_id)
                       for capacity in get_args(Capacity)]  # spot too: an earlier spec may have allowed it
            if any(deleted):
                await self._cloud.delete_document(launch_document_name(self._config.parameter_prefix, name,
                                                                       "controller"))
        except (ClientError, BotoCoreError) as exc:
            log.error("could not delete the AWS groups of deployment %s: %s", name, exc)

    async def close(self) -> None:
        """Stop watching; leave every instance running for the next control plane to adopt.

        A control plane stops when it is replaced (every merge rolls out a new image digest, ECS
        replaces the tasks), far more often than for good: terminating its instances would make every
        deploy a cold start of every model. The next control plane keeps the replicas it finds tagged
        with their ids (`adopt`), and each later `start` adopts any other running instance of the group
        (its launch document unchanged) before it grows the group. Terminations that failed are retried here once,
        since those replicas were stopped on purpose. What stays running when no control plane comes
        back (a `pulumi destroy` of a stack with API-made deployments) is in docs/aws.md.
        """
        await self._refresher.stop()
        failed = list(self._failed_stops.values())
        self._claims.clear()
        self._failed_stops.clear()
        results = await asyncio.gather(*(self._instances.release(c) for c in failed), return_exceptions=True)
        for claim, result in zip(failed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("could not terminate instance %s of stopped replica %s: %s", claim.instance_id,
                          claim.replica_id, result)

    async def hand_over(self) -> bool:
        """Leave every instance running for the next leader, whose `start` adopts them (unclaimed by
        any live process once this one is gone): a rolling deploy keeps its GPU capacity."""
        await self._refresher.stop()
        self._claims.clear()
        return True

    # --- the exit-code cache -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Describe every held instance once and update the cache `exit_code` reads; retry the
        terminations that failed earlier. Errors are logged: the next refresh tries again."""
        self._refresher.refreshed()
        try:
            for replica_id, claim in list(self._failed_stops.items()):
                await self._instances.release(claim)
                self._failed_stops.pop(replica_id, None)
            watched = sorted({c.instance_id for c in self._claims.values()
                              if self._states.get(c.instance_id) not in EXITED_EC2})
            if not watched:
                return
            found = await self._cloud.describe_instances(watched)
            for instance_id in watched:
                instance = found.get(instance_id)
                self._states[instance_id] = instance["State"]["Name"] if instance is not None else GONE
        except Exception as exc:  # a background task: log and let the next refresh try again
            log.warning("could not refresh replica instance states: %s", exc)
