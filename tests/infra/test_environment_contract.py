"""The environment contract between infra/ and the runtime: each stack's program renders the control
plane's environment, and the runtime's `Settings` loads it.

(a) every INFERSTACK_* variable infra writes is one that `Settings` reads (nothing written for nobody);
(b) `Settings` accepts the values (a secret's value, which infra never sees, is a placeholder).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from program_harness import Program

from inferstack.providers.aws import AwsProviderConfig
from inferstack.providers.kubernetes import KubernetesProviderConfig
from inferstack.settings import Env, Settings
from local_process import RESOURCE_TYPE as LOCAL_PROCESS
from local_process import LocalProcessProvider

FROM_SECRET = "placeholder-for-a-value-from-a-secret"
STACKS = {"local": "local", "dev": "kubernetes", "prod": "aws"}
"""Fixture (stack) -> its target, which is also the provider the control plane must run."""


def local_environment(program: Program) -> dict[str, str]:
    (process,) = program.of_type(LOCAL_PROCESS)
    return LocalProcessProvider(api_key=FROM_SECRET).environment(process["inputs"])


def kubernetes_environment(program: Program) -> dict[str, str]:
    """The control-plane container's env; `valueFrom` (a Secret, the pod's own namespace) as placeholders."""
    (deployment,) = [d for d in program.of_type("kubernetes:apps/v1:Deployment")
                     if d["inputs"]["metadata"]["labels"].get("app.kubernetes.io/component") == "control-plane"]
    (container,) = deployment["inputs"]["spec"]["template"]["spec"]["containers"]
    namespace = deployment["inputs"]["metadata"]["namespace"]

    def value(env: dict) -> str:
        field = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        return namespace if field == "metadata.namespace" else env.get("value", FROM_SECRET)

    return {e["name"]: value(e) for e in container["env"]}


def aws_environment(program: Program) -> dict[str, str]:
    """The ECS container definition's `environment`, and its `secrets` (Secrets Manager) as placeholders."""
    (task,) = program.of_type("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = json.loads(task["inputs"]["containerDefinitions"])
    return {**{s["name"]: FROM_SECRET for s in container["secrets"]},
            **{e["name"]: e["value"] for e in container["environment"]}}


EXTRACT = {"local": local_environment, "kubernetes": kubernetes_environment, "aws": aws_environment}


@pytest.fixture(params=list(STACKS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    target = STACKS[request.param]
    return target, EXTRACT[target](request.getfixturevalue(request.param))


def test_infra_writes_only_variables_that_settings_reads(rendered: tuple[str, dict[str, str]]) -> None:
    _target, environment = rendered
    assert Env.HOME in environment and Env.BOOTSTRAP_API_KEY in environment, "extracted the control plane's env"
    unread = {name for name in environment if name.startswith("INFERSTACK_")} - Settings.environment_names()
    assert unread == set(), f"infra writes variables the runtime never reads: {sorted(unread)}"


def test_settings_accept_what_infra_writes(rendered: tuple[str, dict[str, str]]) -> None:
    target, environment = rendered
    settings = Settings.from_env(environment)  # raises, naming the variable, on a value it rejects
    assert settings.provider == target
    assert settings.bootstrap_api_key == FROM_SECRET, "the bootstrap key arrives, from a secret"
    if target == "aws":
        config = AwsProviderConfig.from_settings(settings)  # the provider starts from what infra wrote
        assert config.stack == "prod" and config.launch_templates and config.subnets


SEALING_KEY_TARGETS = ("kubernetes", "aws")
"""Targets whose control-plane home is gone at a restart: the key sealing stored tokens comes from a secret."""


def test_the_token_sealing_key_reaches_the_cloud_control_planes_from_a_secret(
        rendered: tuple[str, dict[str, str]]) -> None:
    target, environment = rendered
    if target not in SEALING_KEY_TARGETS:
        assert Env.TOKEN_KEY not in environment, "the local control plane keeps its key file in its home"
        return
    assert environment.get(Env.TOKEN_KEY) == FROM_SECRET, f"{Env.TOKEN_KEY} from a secret, on {target}"
    assert Settings.from_env(environment).token_key == FROM_SECRET


def test_the_token_sealing_key_is_never_a_plain_value(dev: Program, prod: Program) -> None:
    (deployment,) = [d for d in dev.of_type("kubernetes:apps/v1:Deployment")
                     if d["inputs"]["metadata"]["labels"].get("app.kubernetes.io/component") == "control-plane"]
    (container,) = deployment["inputs"]["spec"]["template"]["spec"]["containers"]
    (variable,) = [e for e in container["env"] if e["name"] == Env.TOKEN_KEY]
    assert "value" not in variable
    reference = variable["valueFrom"]["secretKeyRef"]
    (secret,) = [s for s in dev.of_type("kubernetes:core/v1:Secret")
                 if s["inputs"]["metadata"]["name"] == reference["name"]]
    assert secret["inputs"]["stringData"]["$secret"][reference["key"]] == dev.secrets["token_key"]

    (task,) = prod.of_type("aws:ecs/taskDefinition:TaskDefinition")
    (definition,) = json.loads(task["inputs"]["containerDefinitions"])
    assert Env.TOKEN_KEY not in {e["name"] for e in definition["environment"]}
    (variable,) = [s for s in definition["secrets"] if s["name"] == Env.TOKEN_KEY]
    assert variable["valueFrom"].startswith("arn:aws:secretsmanager:")
    version = prod.named("inferstack-prod-state-token-key", "aws:secretsmanager/secretVersion:SecretVersion")
    assert version["inputs"]["secretString"] == {"$secret": prod.secrets["token_key"]}
    (readable,) = [json.loads(p["inputs"]["policy"]) for p in prod.of_type("aws:iam/rolePolicy:RolePolicy")
                   if p["name"] == "inferstack-prod-iam-execution-secrets"]
    (statement,) = readable["Statement"]
    assert variable["valueFrom"] in statement["Resource"], "the task execution role may read the key"


def test_the_kubernetes_provider_starts_from_what_the_dev_stack_writes(dev: Program, tmp_path: Path) -> None:
    environment = kubernetes_environment(dev)
    # The profiles file is the stack's ConfigMap, mounted where the environment says.
    (profiles,) = dev.of_type("kubernetes:core/v1:ConfigMap")
    mounted = tmp_path / "profiles.json"
    mounted.write_text(profiles["inputs"]["data"]["profiles.json"])
    assert environment[Env.K8S_PROFILES].endswith("/profiles.json")
    config = KubernetesProviderConfig.from_settings(Settings.from_env({**environment, Env.K8S_PROFILES: str(mounted)}))
    assert config.namespace == "inferstack-dev" and config.model_cache_claim == "inferstack-model-cache"
    assert config.profiles["gpu.l4"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert config.pod_settings("gpu.l4").placement == config.profiles["gpu.l4"]
