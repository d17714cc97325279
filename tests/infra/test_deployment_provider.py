"""The dynamic provider's create / read / diff / update / delete against a real control plane
(`inferstack serve` in a subprocess, sim engine on the cpu profile)."""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import httpx
import pytest
from program_harness import Program
from pulumi.dynamic import Config, ConfigureRequest

from deployment_resource import RESOURCE_TYPE, DeploymentProvider
from inferstack.spec import DeploymentSpec
from support import ControlPlane

TOKEN = "hf_ProviderTestToken0123456789abcdefgh"


def props(url: str, token: str | None = TOKEN, **fields: Any) -> dict[str, Any]:
    spec = DeploymentSpec(**{"name": "chat", "hf_model_id": "meta-llama/Llama-3.2-1B-Instruct", "engine": "sim",
                             "hardware_profile": "cpu", "min_replicas": 0, "max_replicas": 2, **fields})
    # As Pulumi hands them over: null properties are dropped.
    return {k: v for k, v in {**spec.stored(), "url": url, "hf_token": token}.items() if v is not None}


def configured(key: str | None, **options: Any) -> DeploymentProvider:
    """A provider as Pulumi's dynamic-provider host hands it the stack's config."""
    provider = DeploymentProvider(**{"timeout_s": 10, **options})
    provider.configure(ConfigureRequest(Config({"inferstack:apiKey": key} if key else {}, "inferstack")))
    return provider


@pytest.fixture
def key(control_plane: ControlPlane) -> str:
    return control_plane.create_key("platform")


@pytest.fixture
def provider(key: str) -> DeploymentProvider:
    return configured(key)


def get(control_plane: ControlPlane, key: str, ref: str) -> httpx.Response:
    return httpx.get(f"{control_plane.url}/v1/deployments/{ref}", headers={"Authorization": f"Bearer {key}"})


def test_create_read_diff_update_delete(control_plane: ControlPlane, provider: DeploymentProvider, key: str) -> None:
    news = props(control_plane.url)
    assert provider.check({}, news).failures == []
    created = provider.create(news)
    outs = created.outs
    assert created.id.startswith("dep-") and outs["deployment_id"] == created.id
    assert outs["max_replicas"] == 2 and outs["hf_token_set"] is True and outs["url"] == control_plane.url
    assert TOKEN not in repr(outs) and "hf_token" not in outs, "the token is never an output"
    assert get(control_plane, key, "chat").json()["spec"]["hf_token_set"] is True

    refreshed = provider.read(created.id, outs).outs
    assert refreshed.pop("status") in ("created", "provisioning", "paused", "running")  # live, the controller's
    assert refreshed == {k: v for k, v in outs.items() if k != "status"}, "refresh of an unchanged deployment"
    assert provider.diff(created.id, outs, news).changes is False

    bigger = props(control_plane.url, max_replicas=4, target_rps=2.5)
    diff = provider.diff(created.id, outs, bigger)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, outs, bigger).outs
    assert updated["max_replicas"] == 4 and updated["target_rps"] == 2.5 and updated["deployment_id"] == created.id
    live = get(control_plane, key, created.id).json()["spec"]
    assert (live["max_replicas"], live["target_rps"]) == (4, 2.5)
    assert provider.diff(created.id, updated, bigger).changes is False

    provider.delete(created.id, updated)
    assert get(control_plane, key, created.id).status_code == 404
    provider.delete(created.id, updated)  # deleting what is gone is not an error
    assert provider.read(created.id, updated).id is None, "refresh of a deleted deployment: gone"


def test_diff_marks_model_name_engine_task_and_url_as_replacements(control_plane: ControlPlane,
                                                                   provider: DeploymentProvider) -> None:
    outs = provider.create(props(control_plane.url)).outs
    for change, field in [({"hf_model_id": "Qwen/Qwen2.5-7B-Instruct"}, "hf_model_id"), ({"engine": "vllm"}, "engine"),
                          ({"task": "embed"}, "task"), ({"name": "chat2"}, "name")]:
        diff = provider.diff(outs["deployment_id"], outs, props(control_plane.url, **change))
        assert diff.changes is True and diff.replaces == [field] and diff.delete_before_replace is True
    moved = {**props(control_plane.url), "url": "http://elsewhere:8000"}
    assert provider.diff(outs["deployment_id"], outs, moved).replaces == ["url"]


def test_token_rotation_and_unset_fields_are_changes(control_plane: ControlPlane, provider: DeploymentProvider) -> None:
    outs = provider.create(props(control_plane.url, max_price_per_hour=5.0)).outs
    rotated = props(control_plane.url, token="hf_RotatedToken0123456789abcdefghijk", max_price_per_hour=5.0)
    diff = provider.diff(outs["deployment_id"], outs, rotated)
    assert diff.changes is True and diff.replaces == []
    unset = props(control_plane.url)  # max_price_per_hour removed from the stack
    assert provider.diff(outs["deployment_id"], outs, unset).changes is True
    after = provider.update(outs["deployment_id"], outs, unset).outs
    assert "max_price_per_hour" not in after or after["max_price_per_hour"] is None


def test_refusals_name_the_field(control_plane: ControlPlane, provider: DeploymentProvider) -> None:
    failures = provider.check({}, {**props(control_plane.url), "min_replicas": 3, "max_replicas": 1}).failures
    assert [(f.property, f.reason) for f in failures] == [
        ("min_replicas", "min_replicas (3) must not exceed max_replicas (1)")]
    provider.create(props(control_plane.url))
    with pytest.raises(RuntimeError, match=r"\(409\)"):
        provider.create(props(control_plane.url))


def test_after_a_key_rotation_refresh_and_destroy_use_the_new_key(control_plane: ControlPlane, key: str,
                                                                  prod: Program) -> None:
    """The provider Pulumi stores in the state (here: the one the prod program registers) carries no
    key. Refresh and destroy unpickle it in another process and run with the key the stack's config
    holds then: after a rotation, the new one (the old key, the program's, is not valid here)."""
    resource = prod.of_type(RESOURCE_TYPE)[0]
    stored = resource["inputs"]["__provider"]["$secret"]
    assert prod.secrets["api_key"] not in base64.b64decode(stored).decode("latin-1"), "no key in the state"

    created = configured(key).create(props(control_plane.url, token=None))
    code = ("import base64, dill, sys; from pulumi.dynamic import Config, ConfigureRequest; "
            "from pulumi.runtime._serialization import _deserialize; "
            "stored, key, url, id_ = sys.stdin.read().split(); "
            "p = _deserialize(lambda: dill.loads(base64.b64decode(stored))); "
            "p.configure(ConfigureRequest(Config({'inferstack:apiKey': key}, 'inferstack'))); "
            "print(p.read(id_, {'url': url}).id); p.delete(id_, {'url': url}); print('deleted')")
    done = subprocess.run([sys.executable, "-c", code], input=f"{stored} {key} {control_plane.url} {created.id}",
                          capture_output=True, text=True, cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [created.id, "deleted"]
    assert get(control_plane, key, created.id).status_code == 404


def test_the_key_can_come_from_the_environment(control_plane: ControlPlane, key: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSTACK_API_KEY", key)
    created = configured(None).create(props(control_plane.url, token=None))
    assert created.outs["hf_token_set"] is False
    configured(None).delete(created.id, created.outs)


def test_provider_pickles_by_value_for_the_dynamic_provider_process() -> None:
    from pulumi.dynamic.dynamic import serialize_provider
    from pulumi.runtime._serialization import _serialize

    serialized, _ = _serialize(True, serialize_provider, configured("isk-x"))
    # A process that cannot import infra/ (like Pulumi's dynamic-provider host) loads and uses it.
    code = ("import base64, dill, sys; from pulumi.runtime._serialization import _deserialize; "
            "p = _deserialize(lambda: dill.loads(base64.b64decode(sys.stdin.read()))); "
            "print(type(p).__name__, p._key(), p.diff('d', {'max_replicas': 1}, {'max_replicas': 2}).changes)")
    done = subprocess.run([sys.executable, "-c", code], input=serialized, capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DeploymentProvider", "None", "True"], "no key travels with the provider"
    assert base64.b64decode(serialized)  # sanity: it is the base64 Pulumi stores
