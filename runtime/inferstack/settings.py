"""Process-wide settings: every environment variable the control plane and its clients read.

Each variable's name is spelled once, in `Env`; the fields below name them as aliases, and `infra/`
imports `Env` when it writes a control plane's environment (tests/infra/test_environment_contract.py
renders each stack and loads what it writes through `Settings`). Read once at the edge
(`Settings.from_env()` when the server or CLI starts) and passed down as data: nothing else reads
os.environ for these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator


class Env:
    """The names of the environment variables, the only place each is spelled."""

    # the control plane
    HOME: Final = "INFERSTACK_HOME"
    DATABASE_URL: Final = "INFERSTACK_DATABASE_URL"
    DATABASE_PASSWORD_SECRET: Final = "INFERSTACK_DATABASE_PASSWORD_SECRET"
    FILES_URL: Final = "INFERSTACK_FILES_URL"
    PROVIDER: Final = "INFERSTACK_PROVIDER"
    CONTROLLER_TICK_S: Final = "INFERSTACK_CONTROLLER_TICK_S"
    HISTORY_INTERVAL_S: Final = "INFERSTACK_HISTORY_INTERVAL_S"
    HEARTBEAT_S: Final = "INFERSTACK_HEARTBEAT_S"
    BOOTSTRAP_API_KEY: Final = "INFERSTACK_BOOTSTRAP_API_KEY"
    BOOTSTRAP_TENANT: Final = "INFERSTACK_BOOTSTRAP_TENANT"
    VLLM_PYTHON: Final = "INFERSTACK_VLLM_PYTHON"
    MAX_REQUEST_BYTES: Final = "INFERSTACK_MAX_REQUEST_BYTES"
    CLIENT_TIMEOUT_S: Final = "INFERSTACK_CLIENT_TIMEOUT_S"
    METRICS_PUBLIC: Final = "INFERSTACK_METRICS_PUBLIC"
    TOKEN_KEY: Final = "INFERSTACK_TOKEN_KEY"
    # what replicas run, on providers that run images
    VLLM_IMAGE: Final = "INFERSTACK_VLLM_IMAGE"
    RUNTIME_IMAGE: Final = "INFERSTACK_RUNTIME_IMAGE"
    # the aws provider
    STACK: Final = "INFERSTACK_STACK"
    AWS_LAUNCH_TEMPLATES: Final = "INFERSTACK_AWS_LAUNCH_TEMPLATES"
    AWS_SUBNETS: Final = "INFERSTACK_AWS_SUBNETS"
    AWS_PARAMETER_PREFIX: Final = "INFERSTACK_AWS_PARAMETER_PREFIX"
    AWS_DECLARED_DEPLOYMENTS: Final = "INFERSTACK_AWS_DECLARED_DEPLOYMENTS"
    # a kubernetes provider
    K8S_NAMESPACE: Final = "INFERSTACK_K8S_NAMESPACE"
    K8S_PROFILES: Final = "INFERSTACK_K8S_PROFILES"
    K8S_MODEL_CACHE_CLAIM: Final = "INFERSTACK_K8S_MODEL_CACHE_CLAIM"
    K8S_HF_TOKEN_SECRET: Final = "INFERSTACK_K8S_HF_TOKEN_SECRET"
    K8S_UNSCHEDULABLE_TIMEOUT_S: Final = "INFERSTACK_K8S_UNSCHEDULABLE_TIMEOUT_S"
    # several providers at once, in placement order
    PROVIDERS: Final = "INFERSTACK_PROVIDERS"
    # files in S3
    S3_ENDPOINT_URL: Final = "INFERSTACK_S3_ENDPOINT_URL"
    # boto3's own, read here too so the AWS clients are configured from one place
    AWS_REGION: Final = "AWS_REGION"
    AWS_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"
    AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
    # clients of the control plane (the CLI, `inferstack apply`, the Pulumi provider)
    URL: Final = "INFERSTACK_URL"
    API_KEY: Final = "INFERSTACK_API_KEY"
    HF_TOKEN: Final = "INFERSTACK_HF_TOKEN"


class SettingsError(ValueError):
    """An environment variable is malformed; the message names it."""


class _FromEnvironment(BaseModel):
    """Fields named by their variable (alias) or, in code and tests, by their field name."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, validate_default=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the variables (os.environ by default); an empty one counts as unset."""
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if v}
        # Sub-settings read the same flat environment: each picks out its own variables.
        nested = {name: env for name in cls._sections()}
        try:
            return cls.model_validate({**env, **nested})
        except ValidationError as exc:
            raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None

    @classmethod
    def environment_names(cls) -> frozenset[str]:
        """Every variable this model (and its sub-settings) reads."""
        names: set[str] = set()
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(choice for choice in alias.choices if isinstance(choice, str))
            elif isinstance(alias, str):
                names.add(alias)
            elif name in cls._sections():
                names |= cls._sections()[name].environment_names()
        return frozenset(names)

    @classmethod
    def _sections(cls) -> dict[str, type[_FromEnvironment]]:
        return {name: field.annotation for name, field in cls.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, _FromEnvironment)}


def _describe(error: Any) -> str:
    names = [part for part in error["loc"] if isinstance(part, str)]  # a list item's index names nothing
    name = names[-1] if names else "settings"
    if error["type"] == "value_error":  # our validators' messages read on from the name
        return f"{name} {error['msg'].removeprefix('Value error, ')}"
    return f"{name}: {error['msg']}"


# --- sub-settings -------------------------------------------------------------------------------------------


class ReplicaImages(_FromEnvironment):
    """Images of replicas on providers that run containers (unset: the stack file's defaults)."""

    vllm_image: str | None = Field(None, alias=Env.VLLM_IMAGE, description="The vLLM image (engine vllm).")
    runtime_image: str | None = Field(None, alias=Env.RUNTIME_IMAGE,
                                      description="The inferstack image (engine sim).")


class AwsProviderSettings(_FromEnvironment):
    """This stack's AWS resources for the `aws` provider, written by infra's task definition.
    Required only when the provider is `aws`; `AwsProviderConfig.from_settings` says which are missing."""

    region: str | None = Field(None, validation_alias=AliasChoices(Env.AWS_REGION, Env.AWS_DEFAULT_REGION))
    endpoint_url: str | None = Field(None, alias=Env.AWS_ENDPOINT_URL,
                                     description="An AWS-compatible endpoint (moto in tests).")
    stack: str | None = Field(None, alias=Env.STACK, description="Names and tags the replica groups.")
    launch_templates: dict[str, str] | None = Field(None, alias=Env.AWS_LAUNCH_TEMPLATES,
                                                    description="JSON: hardware profile -> launch template id.")
    subnets: list[str] | None = Field(None, alias=Env.AWS_SUBNETS,
                                      description="Comma-separated private subnets of new replica groups.")
    parameter_prefix: str | None = Field(None, alias=Env.AWS_PARAMETER_PREFIX,
                                         description="SSM path of launch documents; unset: infra's default.")
    declared_deployments: list[str] = Field(
        default_factory=list, alias=Env.AWS_DECLARED_DEPLOYMENTS,
        description="Comma-separated names of the stack's declared deployments: Pulumi creates their groups.")

    @field_validator("launch_templates", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not JSON ({exc})") from None

    @field_validator("subnets", "declared_deployments", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value


class KubernetesProviderSettings(_FromEnvironment):
    """What the `kubernetes` provider needs, written by infra's Deployment of the control plane. The
    API server and credentials: in-cluster service account, else the kubeconfig KUBECONFIG names."""

    namespace: str | None = Field(None, alias=Env.K8S_NAMESPACE, description="Where replica Deployments live.")
    profiles_file: Path | None = Field(None, alias=Env.K8S_PROFILES,
                                       description="JSON: hardware profile -> node selector and tolerations.")
    model_cache_claim: str | None = Field(None, alias=Env.K8S_MODEL_CACHE_CLAIM,
                                          description="The shared Hugging Face cache volume claim.")
    hf_token_secret: str | None = Field(None, alias=Env.K8S_HF_TOKEN_SECRET,
                                        description="The Secret holding the Hugging Face token, if any.")
    unschedulable_timeout_s: float = Field(60.0, alias=Env.K8S_UNSCHEDULABLE_TIMEOUT_S, gt=0,
                                           description="A pod unschedulable this long: the cluster is full.")


class S3Settings(_FromEnvironment):
    """How the control plane reaches S3: the file store (INFERSTACK_FILES_URL=s3://...) and LoRA adapters
    kept in S3; credentials: boto3's chain."""

    endpoint_url: str | None = Field(None, validation_alias=AliasChoices(Env.S3_ENDPOINT_URL, Env.AWS_ENDPOINT_URL),
                                     description="MinIO or a local emulator; unset: AWS.")
    region: str = Field("us-east-1", validation_alias=AliasChoices(Env.AWS_REGION, Env.AWS_DEFAULT_REGION))


# --- the control plane -------------------------------------------------------------------------------------


class Settings(_FromEnvironment):
    """What `inferstack serve` reads. A bad value fails at start-up, naming its variable."""

    home: Path = Field(default_factory=lambda: Path.home() / ".inferstack", alias=Env.HOME,
                       description="State: the SQLite file, replica logs, uploaded files.")
    database_url: str | None = Field(None, alias=Env.DATABASE_URL, description="Unset: SQLite in the home.")
    database_password_secret: str | None = Field(
        None, alias=Env.DATABASE_PASSWORD_SECRET,
        description="Secrets Manager secret (RDS-managed) holding the database password: read when a connection "
        "opens and again when the password was rotated. Unset: the URL's or libpq's (PGPASSWORD).")
    files_url: str | None = Field(
        None, alias=Env.FILES_URL,
        description="Where uploads and batch results live: a directory (default) or s3://bucket/prefix.",
    )
    provider: Literal["local", "aws", "kubernetes"] = Field(
        "local", alias=Env.PROVIDER,
        description="Where replicas run: local processes, EC2 instances in Auto Scaling groups, or Kubernetes pods.",
    )
    providers: list[Literal["local", "aws", "kubernetes"]] | None = Field(
        None, alias=Env.PROVIDERS, min_length=1,
        description="Comma-separated: several providers at once, in placement order (a deployment's "
                    "`providers` picks among them); unset: INFERSTACK_PROVIDER alone.",
    )
    controller_tick_s: float = Field(1.0, alias=Env.CONTROLLER_TICK_S, gt=0)
    history_interval_s: float = Field(
        10.0, alias=Env.HISTORY_INTERVAL_S, gt=0, le=600,
        description="How often the leader samples every deployment for the console's charts (kept in the store).",
    )
    heartbeat_s: float = Field(
        5.0, alias=Env.HEARTBEAT_S, gt=0,
        description="How often a held streaming request gets an SSE comment while its deployment wakes.",
    )
    bootstrap_api_key: str | None = Field(
        None, alias=Env.BOOTSTRAP_API_KEY, repr=False,
        description="A key registered at start-up (from a deployment tool's secret) if the store lacks it.",
    )
    bootstrap_tenant: str = Field("platform", alias=Env.BOOTSTRAP_TENANT)
    vllm_python: str | None = Field(
        None, alias=Env.VLLM_PYTHON,
        description="The Python interpreter of the environment that has vLLM installed.",
    )
    max_request_bytes: int = Field(
        16 * 2**20, alias=Env.MAX_REQUEST_BYTES, ge=1024,
        description="The largest inference request body the gateway reads (413 past it).",
    )
    client_timeout_s: float = Field(
        30.0, alias=Env.CLIENT_TIMEOUT_S, gt=0,
        description="How long a client may take to send a request's headers, and then its body.",
    )
    metrics_public: bool = Field(
        False, alias=Env.METRICS_PUBLIC,
        description="Serve every series at /metrics without a key (a scraper on a private network); "
                    "otherwise a key is required and shows its own deployments' series only.",
    )
    token_key: str | None = Field(
        None, alias=Env.TOKEN_KEY, repr=False, min_length=32,
        description="A secret (32+ characters) the key sealing HF tokens is derived from; "
                    "unset: INFERSTACK_HOME/token.key.",
    )
    replica_images: ReplicaImages = Field(default_factory=ReplicaImages)
    aws: AwsProviderSettings = Field(default_factory=AwsProviderSettings)
    kubernetes: KubernetesProviderSettings = Field(default_factory=KubernetesProviderSettings)
    s3: S3Settings = Field(default_factory=S3Settings)

    @field_validator("providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value

    @property
    def provider_names(self) -> list[str]:
        """The providers this control plane runs, in placement order."""
        return list(dict.fromkeys(self.providers)) if self.providers else [self.provider]

    @field_validator("home")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'inferstack.db'}"

    @property
    def replica_log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"


class ClientSettings(_FromEnvironment):
    """What a client of the control plane (the CLI, `inferstack apply`, the Pulumi provider) reads."""

    url: str = Field("http://127.0.0.1:8000", alias=Env.URL)
    api_key: str | None = Field(None, alias=Env.API_KEY, repr=False)

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
