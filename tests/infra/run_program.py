"""Run the Pulumi program of one stack file under Pulumi's mocks and write every registration as JSON.

A subprocess per run: the Pulumi runtime keeps global state (settings, the root stack), so each
program gets a fresh interpreter. No Pulumi CLI, no cloud, no cluster: the mocks answer every
resource with its inputs plus the few outputs the program reads (ids, ARNs, DNS names).

    python tests/infra/run_program.py stacks/Pulumi.dev.yaml out.json [--plain-hf-token] [--no-api-key]
                                      [--no-token-key]
                                      [--set 'inferstack:deployments=<json>'] [--preview]
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
API_KEY = "isk-test-platform-key-0123456789abcdef"
HF_TOKEN = "hf_TestTokenValue0123456789abcdefABCDEF"
TOKEN_KEY = "tk-test-sealing-key-0123456789abcdef0123456789abcdef"


def _mark_secrets(value: Any) -> Any:
    """Turn Pulumi's wire form of a secret into {"$secret": value}, so tests can see what is secret."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return {"$secret": _mark_secrets(value.get("value"))}
        return {k: _mark_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_secrets(v) for v in value]
    return value


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[dict[str, Any]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append({
                "type": request.type, "name": request.name, "urn": response.urn, "parent": request.parent,
                "custom": request.custom,
                "inputs": _mark_secrets(json_format.MessageToDict(request.object)),
                "ignore_changes": list(request.ignoreChanges),
                "additional_secret_outputs": list(request.additionalSecretOutputs),
                "dependencies": list(request.dependencies),
                "delete_before_replace": request.deleteBeforeReplace, "protect": request.protect,
                "custom_timeouts": json_format.MessageToDict(request.customTimeouts),
            })
        return response


ARNS = {
    "aws:iam/role:Role": "arn:aws:iam::123456789012:role/{name}",
    "aws:iam/instanceProfile:InstanceProfile": "arn:aws:iam::123456789012:instance-profile/{name}",
    "aws:secretsmanager/secret:Secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
    "aws:s3/bucket:Bucket": "arn:aws:s3:::{name}-bucket",
    "aws:ec2/launchTemplate:LaunchTemplate": "arn:aws:ec2:us-east-1:123456789012:launch-template/{name}-id",
    "aws:cloudwatch/logGroup:LogGroup": "arn:aws:logs:us-east-1:123456789012:log-group:{name}",
}


def _arn(typ: str, name: str) -> str:
    """An ARN in the form AWS gives the type (policy linters check resources against those forms)."""
    return ARNS.get(typ, "arn:aws:mock:us-east-1:123456789012:{name}").format(name=name)


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        name = args.name
        if args.typ.startswith("aws:"):
            state.setdefault("arn", _arn(args.typ, name))
            state.setdefault("name", state.get("namePrefix", "") + name)
        extra = {
            "aws:lb/loadBalancer:LoadBalancer": {"dnsName": f"{name}.elb.amazonaws.com", "zoneId": "Z35SXDOTRQ7X7K"},
            "aws:rds/instance:Instance": {"address": f"{name}.rds.amazonaws.com",
                                          "masterUserSecrets": [{"secretArn": _arn(
                                              "aws:secretsmanager/secret:Secret", f"rds!{name}")}]},
            "aws:s3/bucket:Bucket": {"bucket": f"{name}-bucket"},
            "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": {"registryId": "123456789012"},
            "aws:apigatewayv2/api:Api": {"apiEndpoint": f"https://{name}.execute-api.amazonaws.com"},
            "pulumi-python:dynamic/inferstack:Deployment": {"deployment_id": f"dep-{name[-12:]}", "status": "created"},
            "pulumi-python:dynamic/inferstack:LocalControlPlane": {
                "url": f"http://{state.get('host')}:{int(state.get('port', 0))}", "pid": 4242,
                "log_path": f"{state.get('home')}/serve.log"},
        }.get(args.typ, {})
        state.update(extra)
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append({"token": args.token, "args": dict(args.args)})
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ["us-east-1a", "us-east-1b", "us-east-1c"], "id": "us-east-1",
                    "zoneIds": ["use1-az1", "use1-az2", "use1-az4"]}
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": "ami-0gpu0123456789abc", "type": "String",
                    "arn": "arn:aws:ssm:::parameter", "id": args.args["name"], "version": 1,
                    "insecureValue": "ami-0gpu0123456789abc"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "us-east-1", "region": "us-east-1", "id": "us-east-1", "description": "US East",
                    "endpoint": "ec2.us-east-1.amazonaws.com"}
        return {}


def stack_config(path: Path, overrides: dict[str, Any], plain_token: bool, api_key: bool,
                 token_key: bool = True) -> tuple[dict, list]:
    document = yaml.safe_load(path.read_text())
    config: dict[str, str] = {}
    for key, value in {**document.get("config", {}), **overrides}.items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = []
    if api_key:
        config["inferstack:apiKey"] = API_KEY
        secret_keys.append("inferstack:apiKey")
    if token_key:
        config["inferstack:tokenKey"] = TOKEN_KEY
        secret_keys.append("inferstack:tokenKey")
    config["inferstack:hfToken"] = HF_TOKEN
    if not plain_token:
        secret_keys.append("inferstack:hfToken")
    return config, secret_keys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stack_file", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", action="append", default=[], help="KEY=JSON overriding a config key")
    parser.add_argument("--plain-hf-token", action="store_true")
    parser.add_argument("--no-api-key", action="store_true")
    parser.add_argument("--no-token-key", action="store_true")
    parser.add_argument("--preview", action="store_true")
    options = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in options.set)}
    config, secret_keys = stack_config(options.stack_file, overrides, options.plain_hf_token, not options.no_api_key,
                                       not options.no_token_key)
    stack = options.stack_file.name.removeprefix("Pulumi.").rsplit(".", 1)[0]

    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="inferstack", stack=stack, preview=options.preview, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    sys.path.insert(0, str(ROOT / "infra"))
    error = None
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")))
    except Exception as exc:  # the test reads the message
        error = f"{type(exc).__name__}: {exc}"
    options.out.write_text(json.dumps({"resources": monitor.registrations, "calls": mocks.calls, "error": error,
                                       "secrets": {"api_key": API_KEY, "hf_token": HF_TOKEN,
                                                   "token_key": TOKEN_KEY}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
