"""The stack's config as typed objects: the validated StackConfig plus its secrets as Pulumi secrets.

`infra/__main__.py` reads the raw values (the only place config is read) and hands them here; the
validation is `inferstack.declared.stackfile.parse_config`, the code `inferstack apply` runs on the same file,
so an invalid stack fails at `pulumi preview` with the field named, before any resource is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from inferstack.declared.stackfile import NAMESPACE, StackConfig, StackFileError, parse_config


@dataclass(frozen=True)
class StackInputs:
    config: StackConfig
    api_key: pulumi.Output[str]
    hf_token: pulumi.Output[str] | None
    token_key: pulumi.Output[str] | None = None
    """INFERSTACK_TOKEN_KEY of the control plane (kubernetes, aws); the local target keeps its key file."""


TOKEN_KEY_TARGETS = ("kubernetes", "aws")
"""Targets whose control-plane home does not survive a restart (and may run several instances): the key
that seals stored Hugging Face tokens must come from a secret, or a restart makes them unreadable."""


def load(stack: str, raw: dict[str, Any], api_key: pulumi.Output[str] | None,
         hf_token: pulumi.Output[str] | None, plain_text_secrets: list[str],
         token_key: pulumi.Output[str] | None = None) -> StackInputs:
    """Validate; raise `pulumi.RunError` (a message, no traceback) naming every field that is wrong.

    `raw` maps `inferstack:<key>` to the plain config values; the secret keys come separately, as the
    Pulumi secrets the program read, and `plain_text_secrets` lists those that were set without
    `--secret` (an error: a token in a stack file in plain text is a leaked token).
    """
    present = {key for key, value in (("apiKey", api_key), ("hfToken", hf_token), ("tokenKey", token_key))
               if value is not None}
    errors = [{"field": f"{NAMESPACE}:{key}",
               "message": f"must be a secret, not plain text: run `pulumi config set --secret {NAMESPACE}:{key}`"}
              for key in plain_text_secrets]
    try:
        config = parse_config(raw, stack, secrets_present=present)
    except StackFileError as exc:
        errors.extend(exc.errors)
        config = None
    if api_key is None:
        errors.append({"field": f"{NAMESPACE}:apiKey", "message": (
            "is required: the platform API key the deployments are managed with "
            f"(`pulumi config set --secret {NAMESPACE}:apiKey <key>`)")})
    if token_key is None and raw.get(f"{NAMESPACE}:target") in TOKEN_KEY_TARGETS:
        errors.append({"field": f"{NAMESPACE}:tokenKey", "message": (
            f"is required on the {raw.get(f'{NAMESPACE}:target')} target: the key the control plane seals stored "
            "Hugging Face tokens with; its home does not survive a restart, so without it every restart makes "
            f"them unreadable (`pulumi config set --secret {NAMESPACE}:tokenKey \"$(openssl rand -hex 32)\"`; "
            "keep it: a new key cannot read what the old one sealed)")})
    if errors or config is None or api_key is None:
        raise pulumi.RunError(str(StackFileError(errors)))
    return StackInputs(config=config, api_key=api_key, hf_token=hf_token,
                       token_key=token_key if config.target in TOKEN_KEY_TARGETS else None)
