"""LoRA adapters in S3 fetched where an engine can read them: the control plane's content-addressed cache
and a cloud replica's fetch at launch, against the moto server over HTTP with real boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from inferstack.engines.container import ADAPTERS_DIR, replica_container
from inferstack.lora import AdapterSpec
from inferstack.lora_fetch import AdapterCache, AdapterUnavailable, fetch_into
from inferstack.s3 import client as s3_client
from inferstack.settings import S3Settings
from inferstack.spec import DeploymentSpec

CONFIG = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture
def s3(moto_reset: str) -> Any:
    client = boto3.client("s3", endpoint_url=moto_reset)
    client.create_bucket(Bucket="adapters")
    return client


def upload(s3: Any, prefix: str, config: dict[str, Any] = CONFIG, weights: bytes = b"\x00" * 64) -> str:
    s3.put_object(Bucket="adapters", Key=f"{prefix}/adapter_config.json", Body=json.dumps(config).encode())
    s3.put_object(Bucket="adapters", Key=f"{prefix}/adapter_model.safetensors", Body=weights)
    return f"s3://adapters/{prefix}"


def cache(tmp_path: Path, endpoint: str) -> AdapterCache:
    return AdapterCache(tmp_path / "cache", lambda: s3_client(S3Settings.from_env({"AWS_ENDPOINT_URL": endpoint})))


def test_an_adapter_is_downloaded_once_and_again_only_when_it_changed(s3: Any, moto_reset: str, tmp_path: Path) -> None:
    source = upload(s3, "team/sql")
    upload(s3, "team/sql-v2", weights=b"other")  # a prefix that starts alike is another adapter
    adapters = cache(tmp_path, moto_reset)

    first = adapters.fetch(source)
    assert sorted(p.name for p in first.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert json.loads((first / "adapter_config.json").read_text()) == CONFIG
    (first / "kept").write_text("a fresh download would not have this")
    again = adapters.fetch(source + "/")
    assert again == first and (again / "kept").exists()  # unchanged ETags: the cached directory, as it was

    upload(s3, "team/sql", {**CONFIG, "r": 16})
    changed = adapters.fetch(source)
    assert changed != first and json.loads((changed / "adapter_config.json").read_text())["r"] == 16
    assert not (changed / "kept").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []  # no partial left


def test_pruning_keeps_the_newest_copy_of_each_adapter_and_nothing_else(
        s3: Any, moto_reset: str, tmp_path: Path) -> None:
    adapters = cache(tmp_path, moto_reset)
    sql, legal = upload(s3, "team/sql"), upload(s3, "team/legal")
    old_sql, kept_legal = adapters.fetch(sql), adapters.fetch(legal)
    upload(s3, "team/sql", {**CONFIG, "r": 16})
    new_sql = adapters.fetch(sql)
    os.utime(old_sql, (1, 1))  # fetched long before the change
    (tmp_path / "cache" / ".partial-x1").mkdir()  # a download cut off by a killed control plane
    (tmp_path / "cache" / ("0" * 32)).mkdir()  # a copy in an earlier version's layout

    assert adapters.prune() == 3
    assert sorted((tmp_path / "cache").iterdir()) == sorted([new_sql, kept_legal])
    assert adapters.fetch(sql) == new_sql and adapters.prune() == 0


async def test_an_engine_is_given_the_local_directory_of_an_s3_adapter_and_any_other_source_as_it_is(
        s3: Any, moto_reset: str, tmp_path: Path) -> None:
    adapters = cache(tmp_path, moto_reset)
    source = upload(s3, "nested/deep/legal")
    given = await adapters.engine_sources([source, "org/repo", "/srv/adapter", source])
    assert list(given) == [source] and Path(given[source]) == adapters.fetch(source)
    assert await adapters.engine_source("org/repo") == "org/repo"


@pytest.mark.parametrize(("prefix", "reason"), [
    ("s3://missing-bucket/sql", "bucket missing-bucket does not exist"),
    ("s3://adapters/nothing-here", "nothing is stored under s3://adapters/nothing-here"),
    ("s3://adapters/weights-only", "s3://adapters/weights-only holds no adapter_config.json"),
])
def test_what_is_not_an_adapter_in_s3_is_refused_saying_why(s3: Any, moto_reset: str, tmp_path: Path,
                                                             prefix: str, reason: str) -> None:
    s3.put_object(Bucket="adapters", Key="weights-only/adapter_model.safetensors", Body=b"\x00")
    with pytest.raises(AdapterUnavailable, match=reason):
        cache(tmp_path, moto_reset).fetch(prefix)
    with pytest.raises(AdapterUnavailable, match=reason):
        fetch_into(s3, prefix, tmp_path / "replica")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_without_credentials_the_refusal_says_so_and_names_none(s3: Any, moto_reset: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = upload(s3, "sql")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to find here
    with pytest.raises(AdapterUnavailable) as refused:
        cache(tmp_path, moto_reset).fetch(source)
    assert str(refused.value) == f"no AWS credentials to read {source}"


def test_a_cloud_replica_fetches_its_adapter_into_the_directory_its_engine_reads(s3: Any, tmp_path: Path) -> None:
    source = upload(s3, "team/sql")
    s3.put_object(Bucket="adapters", Key="team/sql/tokenizer/vocab.json", Body=b"{}")
    fetch_into(s3, source, tmp_path / "adapters" / "sql")
    assert sorted(str(p.relative_to(tmp_path / "adapters" / "sql")) for p in (tmp_path / "adapters" / "sql").rglob("*")
                  if p.is_file()) == ["adapter_config.json", "adapter_model.safetensors", "tokenizer/vocab.json"]


def test_a_cloud_replicas_launch_command_fetches_its_s3_adapters_and_fails_saying_which_cannot(
        s3: Any, moto_reset: str, tmp_path: Path) -> None:
    upload(s3, "team/sql")
    spec = DeploymentSpec(hf_model_id="org/m", hardware_profile="gpu.l4", adapters=[
        {"name": "sql", "source": "s3://adapters/team/sql"}, {"name": "hub", "source": "org/hub"}])
    command = replica_container(spec, "dep-1", "chat", "vllm", "runtime").fetch_command
    assert command is not None and command[:2] == ["python3", "-m"] and command[-3:] == [
        "--into", ADAPTERS_DIR, "sql=s3://adapters/team/sql"]
    here = [sys.executable, *command[1:-2], str(tmp_path / "adapters"), command[-1]]  # this machine's python, a tmp dir
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_reset}
    done = subprocess.run(here, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "adapters" / "sql" / "adapter_config.json").read_text()) == CONFIG
    failed = subprocess.run([*here[:-1], "legal=s3://adapters/team/legal"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 1 and "adapter legal: nothing is stored under s3://adapters/team/legal" in failed.stderr


def test_a_spec_takes_an_s3_prefix_as_source_and_refuses_what_is_not_one() -> None:
    assert AdapterSpec(name="sql", source="s3://adapters/team/sql/").source == "s3://adapters/team/sql"
    for bad in ("s3://", "s3://A_Bucket/x", "s3:/adapters/x", "ftp://host/x"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            AdapterSpec(name="sql", source=bad)
