"""Settings: every variable read in one place, a bad value named at start-up, the README's table complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferstack.clock import SystemClock
from inferstack.server import adapter_cache, build_provider
from inferstack.settings import ClientSettings, Env, Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_from_env_reads_the_variables_and_an_empty_one_is_unset(tmp_path: Path) -> None:
    settings = Settings.from_env({
        Env.HOME: str(tmp_path), Env.PROVIDER: "aws", Env.CONTROLLER_TICK_S: "0.5", Env.DATABASE_URL: "",
        Env.AWS_DEFAULT_REGION: "eu-west-1", Env.AWS_SUBNETS: "subnet-a, subnet-b", Env.VLLM_IMAGE: "vllm:x",
        Env.AWS_ENDPOINT_URL: "http://127.0.0.1:5000", Env.K8S_NAMESPACE: "inferstack-dev"})
    assert (settings.home, settings.provider, settings.controller_tick_s) == (tmp_path, "aws", 0.5)
    assert settings.database_url is None and settings.resolved_database_url.startswith("sqlite:///")
    assert settings.aws.region == "eu-west-1" and settings.aws.subnets == ["subnet-a", "subnet-b"]
    assert settings.replica_images.vllm_image == "vllm:x" and settings.replica_images.runtime_image is None
    assert settings.kubernetes.namespace == "inferstack-dev"
    # S3 falls back to the AWS endpoint and region, then to us-east-1.
    assert (settings.s3.endpoint_url, settings.s3.region) == ("http://127.0.0.1:5000", "eu-west-1")
    assert Settings.from_env({}).s3.region == "us-east-1"
    assert Settings(home=tmp_path).provider == "local", "fields by name, in code and tests"


@pytest.mark.parametrize(("name", "value"), [
    (Env.PROVIDER, "gcp"), (Env.CONTROLLER_TICK_S, "0"), (Env.HEARTBEAT_S, "soon"),
    (Env.AWS_LAUNCH_TEMPLATES, "gpu.l4=lt-1"),
])
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_every_named_variable_is_read_and_the_readme_lists_what_the_control_plane_reads() -> None:
    named = {v for k, v in vars(Env).items() if k.isupper()}
    # INFERSTACK_HF_TOKEN is `inferstack apply`'s option, read by typer under that name.
    assert Settings.environment_names() | ClientSettings.environment_names() | {Env.HF_TOKEN} == named
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_column = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    listed = {name for cell in first_column for name in re.findall(r"`([A-Z0-9_]+)`", cell)}
    assert Settings.environment_names() <= listed, sorted(Settings.environment_names() - listed)


def test_the_kubernetes_provider_without_its_namespace_fails_at_start_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="INFERSTACK_K8S_NAMESPACE is not set"):
        build_provider(settings := Settings.from_env({Env.PROVIDER: "kubernetes"}), SystemClock(),
                       adapter_cache(settings))


def test_several_providers_are_read_in_placement_order() -> None:
    settings = Settings.from_env({Env.PROVIDERS: "kubernetes, aws"})
    assert settings.provider_names == ["kubernetes", "aws"]
    assert Settings.from_env({Env.PROVIDER: "aws"}).provider_names == ["aws"]
    with pytest.raises(SettingsError, match=Env.PROVIDERS):
        Settings.from_env({Env.PROVIDERS: "kubernetes,gcp"})
