"""An S3 adapter added to a running deployment: a replica on this machine loads it from the control plane's
cache at once; a cloud replica cannot read that cache and fetches S3 adapters at its launch only, so it is
replaced by one that starts with the adapter (the gateway meanwhile routes the adapter only to replicas that
have it). One that cannot be read is a 422 that changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from controller_support import FakeProbe, FakeReplica, Parts, build_parts, eventually

from inferstack.errors import ApiError
from inferstack.fleet import LiveDeployment
from inferstack.lora import AdapterSpec

SQL = AdapterSpec(name="sql", source="s3://adapters/team/sql")


@pytest.fixture
async def parts(moto_reset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                fake_replica: FakeReplica) -> AsyncIterator[Parts]:
    s3 = boto3.client("s3", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="adapters")
    s3.put_object(Bucket="adapters", Key="team/sql/adapter_config.json", Body=json.dumps({"r": 8}).encode())
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_reset)
    built = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    try:
        yield built
    finally:
        await built.close()


async def running(parts: Parts, placed: str | None) -> LiveDeployment:
    parts.provider.placed = placed
    deployment = await parts.create(name="chat", min_replicas=1, max_replicas=1, max_loras=2)  # LoRA on already
    await parts.loop.reconcile(deployment)
    await eventually(lambda: len(deployment.ready_replicas()) == 1)
    return deployment


async def test_a_replica_on_this_machine_loads_an_s3_adapter_from_the_cache_without_a_restart(
        parts: Parts, fake_replica: FakeReplica, tmp_path: Path) -> None:
    deployment = await running(parts, placed=None)
    await parts.actions.add_adapter(deployment, SQL)
    [load] = fake_replica.loaded
    assert load["lora_name"] == "chat:sql" and Path(load["lora_path"]).parent == tmp_path / "adapters"
    assert json.loads((Path(load["lora_path"]) / "adapter_config.json").read_text()) == {"r": 8}
    [replica] = deployment.ready_replicas("sql")
    assert not replica.outdated and parts.provider.started == [replica.replica_id]


async def test_a_cloud_replica_is_replaced_by_one_that_fetches_the_s3_adapter_at_its_launch(
        parts: Parts, fake_replica: FakeReplica) -> None:
    deployment = await running(parts, placed="aws")
    [old] = deployment.ready_replicas()
    await parts.actions.add_adapter(deployment, SQL)
    assert fake_replica.loaded == [] and old.outdated and "sql" not in old.adapters
    assert deployment.ready_replicas("sql") == []  # no replica has it yet: its requests wait for the new one
    await parts.loop.reconcile(deployment)
    await eventually(lambda: deployment.ready_replicas("sql"))
    [new] = deployment.ready_replicas("sql")
    assert new.replica_id != old.replica_id and new.adapters == {"sql": SQL.source} and fake_replica.loaded == []


async def test_an_s3_adapter_that_cannot_be_read_is_refused_and_changes_nothing(parts: Parts) -> None:
    deployment = await running(parts, placed="aws")
    with pytest.raises(ApiError) as refused:
        await parts.actions.add_adapter(deployment, AdapterSpec(name="bad", source="s3://adapters/team/none"))
    assert refused.value.status == 422 and refused.value.message == (
        "Adapter bad cannot be read from s3://adapters/team/none: nothing is stored under s3://adapters/team/none")
    assert deployment.spec.adapters == [] and not any(r.outdated for r in deployment.replicas.values())
    assert parts.events(deployment, "updated") == []
