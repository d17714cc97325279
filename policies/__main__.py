"""The inferstack CrossGuard policy pack: each rule of `rules.py` as a Pulumi policy.

    pulumi preview --policy-pack policies --policy-pack-config policies/config.json

Only adapters live here (Pulumi's argument objects -> `rules.Resource`); the rules are plain
functions, tested by calling them (constructing a PolicyPack starts a gRPC server).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

import rules

SCHEMAS: dict[str, dict[str, Any]] = {
    "allowed-hardware-profiles": {"allowed_hardware_profiles": {
        "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
        "description": "Stack name (or '*') -> the hardware profiles its deployments may use."}},
    "max-replicas-ceiling": {"max_replicas_ceiling": {"type": "integer", "minimum": 1}},
    "monthly-budget": {
        "monthly_budget_usd": {"type": "object", "additionalProperties": {"type": "number"},
                               "description": "Stack name (or '*') -> USD a month at max_replicas."},
        "hours_per_month": {"type": "number", "minimum": 1}},
    "scale-to-zero-outside-prod": {"production_stacks": {"type": "array", "items": {"type": "string"}}},
    "stabilisation-window-floor": {"stabilisation_window_floor_s": {"type": "number", "minimum": 0}},
    "spot-only-where-allowed": {"spot_allowed_stacks": {"type": "array", "items": {"type": "string"}}},
    "hf-token-is-secret": {},
    "public-endpoint-requires-api-keys": {},
}
DESCRIPTIONS = {
    "allowed-hardware-profiles": "Deployments use only the hardware profiles allowed in their stack.",
    "max-replicas-ceiling": "No deployment may scale beyond the max_replicas ceiling.",
    "monthly-budget": "The sum of max_replicas x price x hours fits the stack's monthly budget.",
    "scale-to-zero-outside-prod": "Outside production, deployments scale to zero (min_replicas: 0).",
    "stabilisation-window-floor": "Scale-down stabilisation windows are not below the floor.",
    "spot-only-where-allowed": "Spot capacity only in stacks that allow it.",
    "hf-token-is-secret": "The Hugging Face token is only ever a secret (input, Secret ref, fetch at boot).",
    "public-endpoint-requires-api-keys": "No public endpoint in front of a control plane without API keys.",
}


def current_stack() -> str:
    # The engine runs the pack with the stack's name in the environment ("org/project/dev" or "dev").
    return os.environ.get("PULUMI_STACK", "").rsplit("/", 1)[-1]


def _resource(type_: str, name: str, props: Any, opts: Any) -> rules.Resource:
    secret_outputs = tuple(getattr(opts, "additional_secret_outputs", None) or ())
    return rules.Resource(type=type_, name=name, props=props, secret_outputs=secret_outputs)


def resource_policy(name: str, rule: Callable[[rules.Resource, str, rules.PolicyConfig], list[str]]) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        config = rules.PolicyConfig.from_mapping(args.get_config())
        for message in rule(_resource(args.resource_type, args.name, args.props, args.opts), current_stack(), config):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=DESCRIPTIONS[name], validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY,
                                    config_schema=PolicyConfigSchema(properties=SCHEMAS[name]))


def stack_policy(name: str, rule: Callable[[Sequence[rules.Resource], str, rules.PolicyConfig], list[str]]) -> Any:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        config = rules.PolicyConfig.from_mapping(args.get_config())
        resources = [_resource(r.resource_type, r.name, r.props, r.opts) for r in args.resources]
        for message in rule(resources, current_stack(), config):
            report_violation(message, None)

    return StackValidationPolicy(name=name, description=DESCRIPTIONS[name], validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY,
                                 config_schema=PolicyConfigSchema(properties=SCHEMAS[name]))


PolicyPack(
    name="inferstack",
    policies=[*(resource_policy(n, r) for n, r in rules.RESOURCE_RULES.items()),
              *(stack_policy(n, r) for n, r in rules.STACK_RULES.items())],
)
