"""A declared deployment as a Pulumi resource: a dynamic provider over the control plane's REST API.

`pulumi preview` shows a deployment's changes field by field, like any other resource's:

    ~ inferstack:Deployment chat   update   [diff: ~max_replicas]
    +- inferstack:Deployment chat  replace  [diff: ~hf_model_id]

Each spec field is a top-level property, so the diff names it; `hf_model_id`, `name`, `engine`
and `task` force a replacement (the REST API refuses them in a PATCH), deleted before the new one is
created because names are unique. Replica counts are not properties: the controller owns them.

Secrets: the API key is read at call time, from the stack config (`inferstack:apiKey`, handed to
`configure` on every operation) or INFERSTACK_API_KEY, never captured into the pickled provider in
the state: after a key rotation, refresh and destroy use the new key. The HF token is a secret
input. Neither is ever returned as an output: the outputs carry `hf_token_set` and a short digest of
the token so a rotation still shows as a diff.

The provider methods only use names importable in the dynamic-provider process (`inferstack.*`,
the standard library): Pulumi pickles the provider class by value, its helpers by reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from inferstack.spec import DeploymentSpec
from pickling import by_value

RESOURCE_TYPE = "pulumi-python:dynamic/inferstack:Deployment"


@by_value
class DeploymentProvider(ResourceProvider):
    """create / read / diff / update / delete of one deployment through `/v1/deployments`."""

    def __init__(self, timeout_s: float = 600.0, poll_s: float = 2.0) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._configured_key: str | None = None

    # --- plumbing --------------------------------------------------------------------------------------

    def configure(self, req: ConfigureRequest) -> None:
        # Called for every operation with the stack's current config, so after `pulumi config set
        # --secret inferstack:apiKey <new>` a refresh or destroy uses the new key. Never kept in state.
        self._configured_key = req.config.get("inferstack:apiKey")

    def __getstate__(self) -> dict[str, Any]:
        # Whatever configure() saw stays out of the pickle Pulumi keeps in the state.
        return {**self.__dict__, "_configured_key": None}

    def _key(self) -> str | None:
        from inferstack.settings import ClientSettings

        return self._configured_key or ClientSettings.from_env().api_key

    def _client(self, url: str, wait: bool = False) -> Any:
        from inferstack.client import ControlPlaneClient, ControlPlaneError

        client = ControlPlaneClient(url, self._key())
        if wait:
            # A control plane created in the same `pulumi up` (an ALB's DNS, a task behind it) can
            # take minutes to answer; a wrong certificate, a refused connection or key fails at once.
            try:
                client.wait_ready(self.timeout_s, poll_s=self.poll_s)
            except ControlPlaneError as exc:
                client.close()
                raise RuntimeError(exc.describe()) from None
        return client

    @staticmethod
    def _spec_of(props: dict[str, Any]) -> DeploymentSpec:
        from pydantic import SecretStr

        from inferstack.spec import SPEC_FIELDS, TOKEN_FIELD

        fields: dict[str, Any] = {k: props[k] for k in SPEC_FIELDS if k in props}
        token = props.get(TOKEN_FIELD)
        if token:
            fields[TOKEN_FIELD] = SecretStr(token)
        return DeploymentSpec.model_validate(fields)

    @staticmethod
    def _is_unknown(value: Any) -> bool:
        from pulumi.runtime import rpc

        return isinstance(value, str) and value == rpc.UNKNOWN

    @staticmethod
    def _digest(token: str | None) -> str | None:
        import hashlib

        # 64 bits of a SHA-256 of a high-entropy token: enough to notice a rotation, useless to guess it.
        return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None

    @classmethod
    def _outputs(cls, url: str, deployment: dict[str, Any], token: str | None) -> dict[str, Any]:
        from inferstack.spec import SPEC_FIELDS

        spec = deployment.get("spec", {})
        outs = {k: spec[k] for k in SPEC_FIELDS if k in spec}
        outs |= {"url": url, "deployment_id": deployment["deployment_id"], "status": deployment.get("status"),
                 "hf_token_set": bool(spec.get("hf_token_set")), "hf_token_digest": cls._digest(token)}
        return outs

    @staticmethod
    def _raise(exc: Any) -> None:
        raise RuntimeError(f"control plane refused the deployment ({exc.status}): {exc.describe()}") from None

    # --- the resource lifecycle ---------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from pydantic import ValidationError

        from inferstack.spec import SPEC_FIELDS, error_fields

        known = {k: v for k, v in news.items() if k in SPEC_FIELDS and not self._is_unknown(v)}
        if len(known) < len([k for k in news if k in SPEC_FIELDS]):
            return CheckResult(news, [])  # unknown during preview: check again at update time
        try:
            DeploymentSpec.model_validate(known)
        except ValidationError as exc:
            failures = [CheckFailure(e["field"] or "spec", e["message"]) for e in error_fields(exc.errors())]
            return CheckResult(news, failures)
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        from inferstack.client import ControlPlaneError
        from inferstack.declared.plan import create_body

        spec = self._spec_of(props)
        with self._client(props["url"], wait=True) as client:
            try:
                deployment = client.create_deployment(create_body(spec))
            except ControlPlaneError as exc:
                self._raise(exc)
        return CreateResult(deployment["deployment_id"], self._outputs(props["url"], deployment, props.get("hf_token")))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self._client(props["url"]) as client:
            deployment = client.find_deployment(id_)
        if deployment is None:
            return ReadResult(None, {})  # gone: the next `pulumi up` creates it again
        token_digest = props.get("hf_token_digest")
        outs = self._outputs(props["url"], deployment, None) | {"hf_token_digest": token_digest}
        return ReadResult(id_, outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        from inferstack.declared.plan import spec_changes
        from inferstack.spec import IDENTITY_FIELDS, SPEC_FIELDS

        desired = {k: news[k] for k in SPEC_FIELDS if k in news}
        if any(self._is_unknown(v) for v in [*desired.values(), news.get("url"), news.get("hf_token")]):
            return DiffResult(changes=True, replaces=[], stables=["deployment_id"], delete_before_replace=True)
        changed = set(spec_changes(desired, olds))
        if self._digest(news.get("hf_token")) != olds.get("hf_token_digest"):
            changed.add("hf_token")
        if news.get("url") != olds.get("url"):
            changed.add("url")  # another control plane: the deployment must be created there
        replaces = sorted(changed & (IDENTITY_FIELDS | {"url"}))
        return DiffResult(changes=bool(changed), replaces=replaces, stables=["deployment_id"],
                          delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from inferstack.client import ControlPlaneError
        from inferstack.declared.plan import spec_changes, update_body
        from inferstack.spec import SPEC_FIELDS

        spec = self._spec_of(news)
        fields = list(spec_changes({k: news[k] for k in SPEC_FIELDS if k in news}, olds))
        token = news.get("hf_token")
        if self._digest(token) != olds.get("hf_token_digest") and token:
            fields.append("hf_token")
        with self._client(news["url"]) as client:
            try:
                body = update_body(spec, fields)
                deployment = client.update_deployment(id_, body) if body else client.get_deployment(id_)
            except ControlPlaneError as exc:
                self._raise(exc)
        return UpdateResult(self._outputs(news["url"], deployment, token))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from inferstack.client import ControlPlaneError

        with self._client(props["url"]) as client:
            try:
                client.delete_deployment(id_, missing_ok=True)  # already gone counts as deleted
            except ControlPlaneError as exc:
                self._raise(exc)


@dataclass(frozen=True)
class InferenceDeploymentArgs:
    url: pulumi.Input[str]
    """The control plane's base URL."""
    spec: DeploymentSpec
    """The declared spec; its own hf_token is ignored (tokens travel as `hf_token`)."""
    hf_token: pulumi.Input[str] | None = None
    """A secret input; never an output."""


class InferenceDeployment(Resource, module="inferstack", name="Deployment"):
    """One declared deployment in a control plane. Outputs: deployment_id, status and the live spec."""

    deployment_id: pulumi.Output[str]
    status: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            **args.spec.stored(),
            "url": args.url,
            "hf_token": pulumi.Output.secret(args.hf_token) if args.hf_token is not None else None,
            "deployment_id": None,
            "status": None,
            "hf_token_set": None,
            "hf_token_digest": None,
        }
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["hf_token"])
        super().__init__(DeploymentProvider(), name, props,
                         pulumi.ResourceOptions.merge(opts, secret_opts))
