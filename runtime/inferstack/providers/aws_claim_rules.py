"""The rules of claiming an EC2 instance for a replica, as pure functions over described groups and
instances (the dicts boto3 returns). The claiming itself, with its waits and locks, is `aws_claims`."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from inferstack.providers.aws_groups import DIGEST_TAG

# Auto Scaling lifecycle states of an instance that is, or is about to be, in service.
LIVE_LIFECYCLE = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
ALIVE_EC2 = frozenset({"pending", "running"})
GONE = "gone"
"""Cache state of an instance that EC2 no longer reports at all."""
EXITED_EC2 = frozenset({"shutting-down", "terminated", "stopping", "stopped", GONE})


@dataclass(frozen=True)
class Claim:
    """A replica's instance. An empty `replica_id` is an unclaimed instance being ended."""

    replica_id: str
    instance_id: str
    group: str


def launch_digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def instance_tags(instance: Mapping[str, Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (instance or {}).get("Tags", [])}


def live_members(described: Mapping[str, Any] | None) -> list[str]:
    """The group's instances that are, or are about to be, in service."""
    return [m["InstanceId"] for m in (described or {}).get("Instances", []) if m["LifecycleState"] in LIVE_LIFECYCLE]


def member(described: Mapping[str, Any] | None, instance_id: str) -> Mapping[str, Any] | None:
    return next((m for m in (described or {}).get("Instances", []) if m["InstanceId"] == instance_id), None)


def usable(instance: Mapping[str, Any] | None) -> bool:
    """Alive and addressable: a replica can be served from it."""
    return instance is not None and instance["State"]["Name"] in ALIVE_EC2 and bool(instance.get("PrivateIpAddress"))


def outdated(instance: Mapping[str, Any], digest: str, rewritten: bool, instance_type: str) -> bool:
    """An unclaimed instance runs an outdated spec if it was claimed under another launch document,
    or was never claimed while the document was just rewritten, or is of another instance type."""
    tags = instance_tags(instance)
    stale_document = tags[DIGEST_TAG] != digest if DIGEST_TAG in tags else rewritten
    return stale_document or instance.get("InstanceType") != instance_type


def capacity_on_its_way(described: Mapping[str, Any], waiting: int) -> int:
    """Units of desired capacity that no live member fills and none of our waiting starts asked for:
    the group is replacing an instance lost out of band. E.g. desired 3, live 2, 0 waiting -> 1."""
    live = sum(1 for m in described["Instances"] if m["LifecycleState"] in LIVE_LIFECYCLE)
    return described["DesiredCapacity"] - live - waiting


def new_members(described: Mapping[str, Any] | None, before: Collection[str], reserved: Collection[str]) -> list[str]:
    """Live members that were not in the group before and nobody has reserved."""
    return [i for i in live_members(described) if i not in before and i not in reserved]
