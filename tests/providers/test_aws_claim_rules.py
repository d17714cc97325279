"""The pure rules of claiming an instance, over described groups and instances as boto3 returns them."""

from __future__ import annotations

from typing import Any

import pytest

from inferstack.providers.aws_claim_rules import (
    capacity_on_its_way,
    launch_digest,
    live_members,
    new_members,
    outdated,
    usable,
)
from inferstack.providers.aws_groups import DIGEST_TAG


def group(desired: int, **members: str) -> dict[str, Any]:
    return {"DesiredCapacity": desired, "Instances": [{"InstanceId": i, "LifecycleState": s}
                                                      for i, s in members.items()]}


def instance(state: str = "running", ip: str | None = "10.0.1.5", instance_type: str = "g6.xlarge",
             **tags: str) -> dict[str, Any]:
    return {"InstanceId": "i-1", "State": {"Name": state}, "PrivateIpAddress": ip, "InstanceType": instance_type,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def test_members_on_their_way_in_count_as_live_and_leaving_ones_do_not() -> None:
    described = group(3, a="InService", b="Pending", c="Pending:Wait", d="Terminating", e="Terminated")
    assert live_members(described) == ["a", "b", "c"]
    assert live_members(None) == []
    assert new_members(described, before={"a"}, reserved={"c"}) == ["b"]


@pytest.mark.parametrize(("desired", "members", "waiting", "coming"), [
    (3, {"a": "InService", "b": "InService"}, 0, 1),  # the group replaces an instance lost out of band
    (3, {"a": "InService", "b": "InService"}, 1, 0),  # that unit is the one our own start asked for
    (2, {"a": "InService", "b": "Terminating"}, 0, 1),  # a leaving member is not live
    (1, {"a": "InService"}, 0, 0),  # nothing on its way: the caller grows the group
])
def test_capacity_on_its_way_is_desired_minus_live_minus_our_waiting_starts(
        desired: int, members: dict[str, str], waiting: int, coming: int) -> None:
    assert capacity_on_its_way(group(desired, **members), waiting) == coming


def test_an_instance_is_outdated_by_its_document_or_instance_type() -> None:
    digest = launch_digest('{"model": "a"}')
    assert digest == launch_digest('{"model": "a"}') != launch_digest('{"model": "b"}')
    assert not outdated(instance(**{DIGEST_TAG: digest}), digest, rewritten=True, instance_type="g6.xlarge")
    assert outdated(instance(**{DIGEST_TAG: "0" * 16}), digest, rewritten=False, instance_type="g6.xlarge")
    # Never claimed: it runs whatever SSM held when it booted, stale exactly when the document was just rewritten.
    assert not outdated(instance(), digest, rewritten=False, instance_type="g6.xlarge")
    assert outdated(instance(), digest, rewritten=True, instance_type="g6.xlarge")
    assert outdated(instance(**{DIGEST_TAG: digest}), digest, rewritten=False, instance_type="g5.xlarge")


def test_only_an_alive_instance_with_an_address_is_usable() -> None:
    assert usable(instance())
    assert usable(instance(state="pending"))
    assert not usable(instance(ip=None))
    assert not usable(instance(state="shutting-down"))
    assert not usable(None)
