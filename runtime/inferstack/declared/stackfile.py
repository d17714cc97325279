"""Stack files: the deployments and platform settings of one environment, parsed and validated.

A stack file is Pulumi's `stacks/Pulumi.<stack>.yaml`. Its `config:` block holds, under the project
namespace `inferstack:`

    inferstack:target       local | kubernetes | aws
    inferstack:platform     the platform settings below (PlatformSettings)
    inferstack:deployments  a list of deployments, each validated by the one DeploymentSpec
    inferstack:apiKey       secret: the platform API key (the control plane bootstraps it)
    inferstack:hfToken      secret: the Hugging Face token handed to every deployment
    inferstack:tokenKey     secret: the key the control plane seals stored tokens with (INFERSTACK_TOKEN_KEY);
                            required on kubernetes and aws, whose control-plane home does not survive a restart

This module is pure (no Pulumi import): the Pulumi program (`infra/`) and `inferstack apply` parse
the same declarations with the same code, so a stack that `inferstack apply` accepts is one that
`pulumi preview` accepts, and the error names the same field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from inferstack.engines.container import DEFAULT_RUNTIME_IMAGE, DEFAULT_VLLM_IMAGE
from inferstack.hardware import PROFILES, aws_instance_type
from inferstack.lora import S3_BUCKET
from inferstack.spec import TOKEN_FIELD, DeploymentSpec, Target, error_fields

NAMESPACE = "inferstack"
SECRET_KEYS = ("apiKey", "hfToken", "tokenKey")
"""Config keys that must be Pulumi secrets (`pulumi config set --secret`), never plain text."""


class StackFileError(ValueError):
    """A stack that does not validate; `errors` name each field as `inferstack:<key>...<field>`."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        described = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(f"invalid stack config: {described}")


# --- platform settings ---------------------------------------------------------------------------------


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalSettings(_Settings):
    """A control plane process on this machine (no cloud account)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    home: str | None = Field(None, description="INFERSTACK_HOME; default ~/.inferstack/<stack>.")
    command: list[str] = Field(default_factory=lambda: ["inferstack", "serve"], min_length=1)
    startup_timeout_s: float = Field(60, gt=0)


class KubernetesSettings(_Settings):
    """The cluster comes from the `kubernetes:context` config key (Pulumi's Kubernetes provider)."""

    namespace: str = Field("inferstack", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    ingress_host: str | None = Field(None, description="Public host name; None means no Ingress.")
    ingress_class: str = "nginx"
    tls_secret: str | None = Field(None, description="Secret holding the Ingress TLS certificate.")
    request_timeout_s: int = Field(3600, ge=30, le=86_400, description="Ingress read/send timeout (streams).")
    model_cache_size_gb: int = Field(200, ge=1)
    model_cache_storage_class: str | None = Field(None, description="Must offer ReadWriteMany.")
    state_size_gb: int = Field(10, ge=1)
    database_url_secret: str | None = Field(
        None, description="Secret (key `url`) with a PostgreSQL URL; None keeps SQLite on a volume."
    )
    control_plane_replicas: int = Field(
        2, ge=1, le=10, description="Control-plane pods with a PostgreSQL database (one leads); SQLite runs one."
    )
    gpu_taint_key: str = "nvidia.com/gpu"


class AwsSettings(_Settings):
    """The account and region come from the `aws:region` config key and the usual AWS credentials."""

    vpc_id: str | None = Field(None, description="An existing VPC (with its subnets) instead of a new one.")
    public_subnet_ids: list[str] = Field(default_factory=list)
    private_subnet_ids: list[str] = Field(default_factory=list)
    vpc_cidr: str = "10.42.0.0/16"
    availability_zones: int = Field(2, ge=2, le=4)
    gpu_ami_ssm_parameter: str = Field(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        description="Public SSM parameter naming the GPU AMI (NVIDIA driver + Docker + container toolkit).",
    )
    gpu_root_volume_gb: int = Field(300, ge=50, description="Holds the image and the model weights cache.")
    certificate_arn: str | None = Field(None, description="ACM certificate: HTTPS on the load balancer.")
    domain_name: str | None = Field(
        None, description="The name the certificate is for: the control plane's URL is https://<domain_name>."
    )
    hosted_zone_id: str | None = Field(
        None, description="Route 53 zone of domain_name: its alias record to the load balancer is created there "
        "(else point a CNAME at the load balancer's DNS name yourself)."
    )
    deployer_in_vpc: bool = Field(
        False, description="`pulumi up` runs inside the VPC (a self-hosted runner), so it can reach an internal "
        "load balancer (public: false)."
    )
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    load_balancer_idle_timeout_s: int = Field(
        900, ge=60, le=4000, description="Long and streamed completions; ALB allows up to 4000 s."
    )
    api_gateway: bool = Field(
        False, description="Also front the management routes with an HTTP API (30 s cap; never completions)."
    )
    control_plane_cpu: int = Field(1024, ge=256)
    control_plane_memory_mb: int = Field(2048, ge=512)
    control_plane_count: int = Field(2, ge=1, le=10)
    db_instance_class: str = "db.t4g.medium"
    db_allocated_storage_gb: int = Field(20, ge=20)
    db_multi_az: bool = False
    deletion_protection: bool = Field(False, description="Protect the database and bucket from deletion.")
    docker_hub_credentials_secret_arn: str | None = Field(
        None, description="Secrets Manager secret named `ecr-pullthroughcache/...` holding a Docker Hub "
        "{username, accessToken}: replicas pull Docker Hub images (vllm/vllm-openai) through an ECR "
        "pull-through cache instead of anonymously through one NAT address (Docker Hub rate-limits that).")
    image_pull_secret_arn: str | None = Field(
        None, description="Secrets Manager secret {username, password} for a private control-plane image "
        "registry (e.g. GHCR with a read:packages token); unset: the image is public or in ECR.")
    files_retention_days: int = Field(30, ge=1, description="Batch files older than this are deleted from S3.")
    adapter_buckets: list[Annotated[str, StringConstraints(pattern=f"^{S3_BUCKET}$")]] = Field(
        default_factory=list, description="S3 buckets holding LoRA adapters (s3:// sources) of deployments made "
        "through the API: GPU replicas may read them (they fetch their S3 adapters at launch) and the control "
        "plane may list them (it checks an adapter before adding it). The buckets of the declared deployments' "
        "S3 adapters are added; with none, replicas have no S3 access at all.")

    @model_validator(mode="after")
    def _existing_network(self) -> AwsSettings:
        if self.vpc_id and (len(self.public_subnet_ids) < 2 or len(self.private_subnet_ids) < 2):
            raise ValueError("vpc_id: an existing VPC needs public_subnet_ids and private_subnet_ids "
                             "(two or more each, in different availability zones)")
        if not self.vpc_id and (self.public_subnet_ids or self.private_subnet_ids):
            raise ValueError("vpc_id: subnet ids are only used with an existing VPC (set vpc_id)")
        if self.certificate_arn and not self.domain_name:
            raise ValueError("domain_name: required with certificate_arn: the certificate is for your domain, not "
                             "the load balancer's DNS name, so https://<load balancer> fails TLS verification")
        if self.hosted_zone_id and not self.domain_name:
            raise ValueError("domain_name: required with hosted_zone_id (the record to create in it)")
        return self


class PlatformSettings(_Settings):
    image: str = Field(DEFAULT_RUNTIME_IMAGE, description="The runtime (controller) image.")
    vllm_image: str = Field(DEFAULT_VLLM_IMAGE, description="The official vLLM image for replicas.")
    tenant: str = Field("platform", description="Tenant that owns the declared deployments.")
    public: bool = Field(False, description="Expose the endpoint outside the cluster / VPC.")
    require_api_keys: bool = Field(True, description="Callers must present a bearer key (always, if public).")
    local: LocalSettings = Field(default_factory=LocalSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)


def docker_hub_path(image: str) -> str | None:
    """`vllm/vllm-openai:v0.11.0` -> `vllm/vllm-openai:v0.11.0`; None for an image on another registry.
    A first part with a dot or colon (or `localhost`) is a registry host; `docker.io/` is Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and first in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return rest if "/" in rest else f"library/{rest}"
    if rest and ("." in first or ":" in first or first == "localhost"):
        return None
    return image if rest else f"library/{image}"


# --- the whole stack -------------------------------------------------------------------------------------


class StackConfig(BaseModel):
    """The validated content of a stack file. Secrets are not here: they stay Pulumi secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    target: Target
    platform: PlatformSettings
    deployments: tuple[DeploymentSpec, ...]
    secret_keys_present: frozenset[str] = frozenset()
    """Which of SECRET_KEYS the file declares (as `secure:` values; their ciphertext is not read)."""

    @model_validator(mode="after")
    def _coherent(self) -> StackConfig:
        if self.platform.public and not self.platform.require_api_keys:
            raise ValueError("platform.require_api_keys must be true when platform.public is true")
        if self.target == "aws" and docker_hub_path(self.platform.vllm_image) and \
                not self.platform.aws.docker_hub_credentials_secret_arn:
            raise ValueError(
                f"platform.aws.docker_hub_credentials_secret_arn: required while platform.vllm_image "
                f"({self.platform.vllm_image}) is on Docker Hub: replicas pull it through an ECR pull-through "
                "cache with these credentials (anonymous pulls through one NAT address hit Docker Hub's rate "
                "limit); or mirror the image into ECR and set vllm_image to it")
        if self.target == "aws" and not self.platform.public and not self.platform.aws.deployer_in_vpc and \
                self.deployments:
            raise ValueError(
                "platform.public: false makes the control plane's load balancer internal, and `pulumi up` run "
                "from CI creates the declared deployments through it, which it cannot reach: set public: true "
                "(with aws.allowed_cidrs limited to your CI's addresses), or run pulumi inside the VPC and set "
                "aws.deployer_in_vpc: true")
        return self

    def hardware_profiles(self) -> list[str]:
        """Profiles in use, in first-declared order (one launch template / scheduling entry each)."""
        return list(dict.fromkeys(d.hardware_profile for d in self.deployments))


def parse_config(config: dict[str, Any], stack: str, secrets_present: set[str] | None = None) -> StackConfig:
    """Validate a stack's `config:` mapping (keys `inferstack:...`). Raises StackFileError.

    In a file a secret key's value is `{"secure": "<ciphertext>"}`; only its presence is recorded, and
    a plain-text value is an error. The Pulumi program reads secrets itself (as Pulumi secrets), leaves
    them out of `config` and says which it found through `secrets_present`.
    """
    errors: list[dict[str, str]] = []
    ours = {k.removeprefix(f"{NAMESPACE}:"): v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
    known = {"target", "platform", "deployments", *SECRET_KEYS}
    for key in ours.keys() - known:
        errors.append({"field": f"{NAMESPACE}:{key}",
                       "message": f"unknown key; known keys: {', '.join(sorted(known))}"})

    secrets_present = set(secrets_present or ())
    for key in SECRET_KEYS:
        if key in ours:
            value = ours[key]
            if isinstance(value, dict) and set(value) == {"secure"}:
                secrets_present.add(key)
            else:
                errors.append({"field": f"{NAMESPACE}:{key}", "message": (
                    f"must be a secret, not plain text: run `pulumi config set --secret {NAMESPACE}:{key}`")})

    target = ours.get("target")
    if target not in ("local", "kubernetes", "aws"):
        errors.append({"field": f"{NAMESPACE}:target",
                       "message": f"must be one of local, kubernetes, aws (got {target!r})"})

    platform = _parse_platform(ours.get("platform") or {}, errors)
    deployments = _parse_deployments(ours.get("deployments") or [], errors)
    if platform is not None and target in ("local", "kubernetes", "aws"):
        errors.extend(_target_problems(target, deployments))
    if errors:
        raise StackFileError(errors)
    try:
        return StackConfig(stack=stack, target=target, platform=platform, deployments=tuple(deployments),
                           secret_keys_present=frozenset(secrets_present))
    except ValidationError as exc:
        raise StackFileError(_prefixed(exc, f"{NAMESPACE}:")) from None


def stack_name_of(path: Path) -> str:
    """`stacks/Pulumi.prod.yaml` -> `prod`."""
    name = path.name
    if not (name.startswith("Pulumi.") and name.endswith((".yaml", ".yml"))) or name.count(".") < 2:
        raise StackFileError([{"field": "file", "message": f"{path} is not named Pulumi.<stack>.yaml"}])
    return name.removeprefix("Pulumi.").rsplit(".", 1)[0]


def load_stack_file(path: str | Path) -> StackConfig:
    """Read and validate `stacks/Pulumi.<stack>.yaml`."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackFileError([{"field": "file", "message": f"{path} is not valid YAML: {exc}"}]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise StackFileError([{"field": "config", "message": "must map `inferstack:<key>` to values"}])
    return parse_config(document.get("config") or {}, stack=stack_name_of(path))


# --- pieces ----------------------------------------------------------------------------------------------


def _parse_platform(raw: Any, errors: list[dict[str, str]]) -> PlatformSettings | None:
    try:
        return PlatformSettings.model_validate(raw)
    except ValidationError as exc:
        errors.extend(_prefixed(exc, f"{NAMESPACE}:platform."))
        return None


def _parse_deployments(raw: Any, errors: list[dict[str, str]]) -> list[DeploymentSpec]:
    field = f"{NAMESPACE}:deployments"
    if not isinstance(raw, list):
        errors.append({"field": field, "message": "must be a list of deployments"})
        return []
    parsed: list[DeploymentSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            errors.append({"field": where, "message": "must be a mapping of deployment fields"})
            continue
        label = f"{where}" if not isinstance(item.get("name"), str) else f"{where}({item['name']})"
        if TOKEN_FIELD in item:
            errors.append({"field": f"{label}.{TOKEN_FIELD}", "message": (
                f"never inline a token: set the secret key {NAMESPACE}:hfToken "
                f"(`pulumi config set --secret {NAMESPACE}:hfToken`)")})
            continue
        if not item.get("name") or not isinstance(item["name"], str):
            errors.append({"field": f"{label}.name", "message": "is required in a stack file (a string)"})
            continue
        if item["name"] in seen:
            errors.append({"field": f"{label}.name", "message": f"{item['name']!r} is declared twice"})
            continue
        seen.add(item["name"])
        try:
            parsed.append(DeploymentSpec.model_validate(item))
        except ValidationError as exc:
            errors.extend(_prefixed(exc, f"{label}."))
    return parsed


def _target_problems(target: str, deployments: list[DeploymentSpec]) -> list[dict[str, str]]:
    """What a target cannot realise, named by field (checked here so preview fails, not the controller)."""
    problems: list[dict[str, str]] = []
    for index, spec in enumerate(deployments):
        label = f"{NAMESPACE}:deployments[{index}]({spec.name})"
        profile = PROFILES[spec.hardware_profile]
        if target == "kubernetes" and profile.name != "cpu" and not profile.k8s_gpu_product:
            problems.append({"field": f"{label}.hardware_profile",
                             "message": f"{profile.name} has no Kubernetes GPU node label"})
        if target == "aws" and aws_instance_type(profile.name, spec.gpus_per_replica) is None:
            problems.append({"field": f"{label}.gpus_per_replica", "message": (
                f"no EC2 instance type offers {spec.gpus_per_replica} x {profile.gpu}; "
                f"choose one of {sorted(profile.aws_instance_types)}")})
    return problems


def _prefixed(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for e in error_fields(error.errors()):
        field, message = e["field"], e["message"]
        # Model-level messages start with the field they are about ("vpc_id: ..."): name it once, in the path.
        named = re.match(r"^([a-z_][a-z0-9_]*): ", message)
        if named:
            message = message[named.end():]
            if not field.endswith(named.group(1)):
                field = f"{field}.{named.group(1)}" if field else named.group(1)
        out.append({"field": f"{prefix}{field}" if field else prefix.rstrip("."), "message": message})
    return out

