"""Claiming and releasing the EC2 instance of a replica in a deployment's Auto Scaling groups.

A claim adopts an unclaimed instance already in a group if there is one (capacity the group launched
by itself: Pulumi's first `desired_capacity`, a replacement for an instance lost out of band, a
replica of a control plane that died without `close`; one running an outdated launch document or
instance type is terminated instead), else asks for one more unit of desired capacity, group by
group in order (spot first, on-demand after `capacity_timeout_s`). The claimed instance is tagged
`inferstack:replica=<replica id>`. A release terminates exactly that instance, with decrement.

The rules (what is stale, what is on its way) are pure functions in `aws_claim_rules`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from inferstack.clock import Clock
from inferstack.providers.aws_claim_rules import (
    ALIVE_EC2,
    LIVE_LIFECYCLE,
    Claim,
    capacity_on_its_way,
    instance_tags,
    live_members,
    member,
    new_members,
    outdated,
    usable,
)
from inferstack.providers.aws_cloud import AwsCloud
from inferstack.providers.aws_groups import DIGEST_TAG, REPLICA_TAG
from inferstack.providers.base import ProviderError

log = logging.getLogger("inferstack.providers.aws")


class InstanceClaims:
    """Which instance each replica of this process holds, and the group counts that go with it.

    `poll_s`: how often a claim polls for its instance.
    `capacity_timeout_s`: how long a group other than the last may take before the next is grown.
    `launch_timeout_s`: how long the last group (on-demand) may take to produce an instance.
    """

    def __init__(self, cloud: AwsCloud, clock: Clock, *, poll_s: float, capacity_timeout_s: float,
                 launch_timeout_s: float) -> None:
        self._cloud = cloud
        self._clock = clock
        self._poll_s = poll_s
        self._capacity_timeout_s = capacity_timeout_s
        self._launch_timeout_s = launch_timeout_s
        self._reserved: set[str] = set()  # instance ids claimed, or being claimed, by this process
        # Read-modify-write of a group's desired capacity happens under its lock (no lost updates
        # between a start and a concurrent drain's stop); the slow waits happen outside it.
        self._group_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Claims of this process waiting for an instance of the group, so that capacity the group is
        # launching on its own is told apart from capacity one of our own claims asked for.
        self._waiting: defaultdict[str, int] = defaultdict(int)

    async def claim(self, replica_id: str, groups: list[str], digest: str, rewritten: bool,
                    instance_type: str) -> tuple[Claim, dict[str, Any]]:
        """An instance for the replica: adopt an unclaimed one, else grow the groups in order.
        On any failure the groups' desired capacity is as it was."""
        before: dict[str, set[str]] = {}
        for group in groups:
            described = await self._cloud.describe_group(group)
            before[group] = {m["InstanceId"] for m in (described or {}).get("Instances", [])}
            found = await self._adoptable(group, live_members(described), digest, rewritten, instance_type)
            if found is not None:
                log.info("adopting unclaimed instance %s of %s", found["InstanceId"], group)
                return await self._take(replica_id, group, found, digest)

        for index, group in enumerate(groups):
            last = index == len(groups) - 1
            raised = await self._grow(group)  # counts this claim in self._waiting[group]
            try:
                found = await self._await_new_instance(
                    group, before[group], self._launch_timeout_s if last else self._capacity_timeout_s)
                if found is not None:
                    try:
                        return await self._take(replica_id, group, found, digest)
                    except BaseException:
                        if raised:  # the instance exists only for this claim: end it, with the capacity it took
                            raised = False
                            with contextlib.suppress(ClientError, BotoCoreError):
                                await self.release(Claim(replica_id, found["InstanceId"], group))
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

    async def find_tagged(self, groups: list[str], replica_ids: set[str]) -> list[tuple[Claim, dict[str, Any]]]:
        """The live instances of `groups` tagged with one of `replica_ids`, reserved for them as they are."""
        found = []
        for group in groups:
            ids = [i for i in live_members(await self._cloud.describe_group(group)) if i not in self._reserved]
            instances = await self._cloud.describe_instances(ids) if ids else {}
            for instance_id, instance in instances.items():
                replica_id = instance_tags(instance).get(REPLICA_TAG)
                if replica_id in replica_ids and usable(instance) and instance_id not in self._reserved:
                    self._reserved.add(instance_id)
                    log.info("keeping replica %s: instance %s of %s still runs", replica_id, instance_id, group)
                    found.append((Claim(replica_id, instance_id, group), instance))
        return found

    async def await_declared(self, groups: list[str], parameter: str) -> str:
        """The launch document of a deployment whose groups Pulumi creates, once the groups and the
        document exist (Pulumi creates them after the deployment: a replica asked for in between waits)."""
        deadline = self._clock.now() + self._launch_timeout_s
        while True:
            missing = [g for g in groups if await self._cloud.describe_group(g) is None]
            document = await self._cloud.read_document(parameter)
            if not missing and document is not None:
                return document
            if self._clock.now() >= deadline:
                absent = [*missing, *([] if document is not None else [f"SSM parameter {parameter}"])]
                raise ProviderError(f"the declared deployment's {', '.join(absent)} did not appear within "
                                    f"{self._launch_timeout_s:g} s: Pulumi creates them (run `pulumi up`)")
            await self._clock.sleep(self._poll_s)

    async def release(self, claim: Claim) -> None:
        """Terminate the claim's instance with decrement; tolerate it being gone already.

        An instance that has left its group out of band (spot interruption, manual terminate) is
        still counted in desired capacity, and the group would launch a replacement nobody asked
        for: the controller stopped this replica, so the count goes down by one instead."""
        instance_id = claim.instance_id
        async with self._group_locks[claim.group]:
            instance = (await self._cloud.describe_instances([instance_id])).get(instance_id)
            owner = instance_tags(instance).get(REPLICA_TAG) if instance is not None else None
            if claim.replica_id and owner not in (None, claim.replica_id):
                log.info("instance %s now belongs to replica %s; leaving it", instance_id, owner)
                self._reserved.discard(instance_id)
                return
            described = await self._cloud.describe_group(claim.group)
            found = member(described, instance_id)
            if found is not None and found["LifecycleState"] in LIVE_LIFECYCLE:
                await self._cloud.terminate_in_group(instance_id)
            else:
                if described is not None and described["DesiredCapacity"] > 0 and claim.replica_id:
                    await self._cloud.set_desired_capacity(claim.group, described["DesiredCapacity"] - 1)
                if instance is not None and instance["State"]["Name"] in ALIVE_EC2:
                    await self._cloud.terminate_instance(instance_id)  # detached
        self._reserved.discard(instance_id)

    async def _adoptable(self, group: str, ids: list[str], digest: str, rewritten: bool,
                         instance_type: str) -> dict[str, Any] | None:
        """The first live, unclaimed instance among `ids` that runs the current launch document. An
        outdated one (see `outdated`) serves nobody: it is terminated (with decrement)."""
        candidates = [i for i in ids if i not in self._reserved]
        if not candidates:
            return None
        instances = await self._cloud.describe_instances(candidates)
        for instance_id in candidates:
            instance = instances.get(instance_id)
            if instance is None or instance["State"]["Name"] not in ALIVE_EC2 or instance_id in self._reserved:
                continue
            if outdated(instance, digest, rewritten, instance_type):
                log.warning("terminating unclaimed instance %s of %s: it runs an outdated launch document",
                            instance_id, group)
                await self.release(Claim("", instance_id, group))
                continue
            if instance.get("PrivateIpAddress"):
                return instance
        return None

    async def _grow(self, group: str) -> bool:
        """Desired capacity + 1, unless capacity nobody waits for is already on its way. True if it
        was raised; either way the caller now waits for one instance."""
        async with self._group_locks[group]:
            described = await self._cloud.describe_group(group)
            if described is None:
                raise ProviderError(f"Auto Scaling group {group} disappeared")
            desired = described["DesiredCapacity"]
            coming = capacity_on_its_way(described, self._waiting[group])
            self._waiting[group] += 1
            if coming > 0:
                return False
            grow: asyncio.Future[Any] | None = None
            try:
                if desired + 1 > described["MaxSize"]:
                    # Draining replicas still hold instances while their successors start (a spec update
                    # replaces every replica): the controller, not the group, bounds the count.
                    await self._cloud.set_max_size(group, desired + 1)
                # Shielded: a cancelled await does not stop the request in its thread, so on cancellation
                # wait for its outcome and take the unit back if it landed (else capacity would leak).
                grow = asyncio.ensure_future(self._cloud.set_desired_capacity(group, desired + 1))
                await asyncio.shield(grow)
            except BaseException as exc:
                self._waiting[group] -= 1
                if isinstance(exc, asyncio.CancelledError) and grow is not None:
                    try:
                        await grow
                        await self._cloud.set_desired_capacity(group, desired)
                    except Exception as undo:
                        log.error("could not take back the capacity asked of %s: %s", group, undo)
                raise
            return True

    async def _shrink_quietly(self, group: str) -> None:
        """Undo a `_grow`: desired capacity - 1. Best effort, it runs while another error propagates."""
        try:
            async with self._group_locks[group]:
                described = await self._cloud.describe_group(group)
                if described is not None and described["DesiredCapacity"] > 0:
                    await self._cloud.set_desired_capacity(group, described["DesiredCapacity"] - 1)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not lower the desired capacity of %s back: %s", group, exc)

    async def _await_new_instance(self, group: str, before: set[str], timeout_s: float) -> dict[str, Any] | None:
        """Poll (with the injected clock) until an instance that was not in the group before shows up
        alive, unclaimed and with a private IP; None after `timeout_s`."""
        deadline = self._clock.now() + timeout_s
        while True:
            fresh = new_members(await self._cloud.describe_group(group), before, self._reserved)
            if fresh:
                instances = await self._cloud.describe_instances(fresh)
                for instance_id in fresh:
                    instance = instances.get(instance_id)
                    if instance is not None and instance_id not in self._reserved and usable(instance):
                        return instance
            if self._clock.now() >= deadline:
                return None
            await self._clock.sleep(self._poll_s)

    async def _take(self, replica_id: str, group: str, instance: dict[str, Any],
                    digest: str) -> tuple[Claim, dict[str, Any]]:
        """Reserve the instance (synchronously, so two concurrent claims never take the same one),
        then tag it as this replica's."""
        instance_id = instance["InstanceId"]
        self._reserved.add(instance_id)
        try:
            await self._cloud.tag_instance(instance_id, {REPLICA_TAG: replica_id, DIGEST_TAG: digest})
        except BaseException:
            self._reserved.discard(instance_id)
            raise
        return Claim(replica_id, instance_id, group), instance
