"""What a replica runs on a target, derived from the one spec and the hardware catalogue. Pure.

The container itself (image, command, plain env) and the EC2 launch document come from
`inferstack.engines.container`, shared with the control plane's AWS provider. What is here is only
where a replica runs (scheduling, resources, instance type) and the boot script that fetches its
secrets at boot, never as a literal.
"""

from __future__ import annotations

import shlex

from inferstack.hardware import aws_instance_type
from inferstack.providers.aws_groups import DEPLOYMENT_TAG, REPLICA_LOG_PATH, parameter_name
from inferstack.spec import DeploymentSpec

# --- AWS -----------------------------------------------------------------------------------------------


def instance_type(spec: DeploymentSpec) -> str:
    found = aws_instance_type(spec.hardware_profile, spec.gpus_per_replica)
    assert found is not None, "stack validation rejects profiles without an instance type"
    return found


USER_DATA = """#!/bin/bash
# inferstack GPU replica ({profile}): runs the deployment named by this instance's
# `{deployment_tag}` tag. Model, flags and port come from the SSM parameter
# {document}; the Hugging Face token from Secrets Manager at boot.
# No secret is written in this script, in the launch template or in the instance's tags.
set -euo pipefail
exec > >(tee -a {log_path}) 2>&1
IMDS=http://169.254.169.254/latest
TOKEN=$(curl -sS -X PUT "$IMDS/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
meta() {{ curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/meta-data/$1"; }}
REGION=$(meta placement/region)
DEPLOYMENT=$(meta tags/instance/{deployment_tag})
LAUNCH=$(aws ssm get-parameter --region "$REGION" --name {parameter} \\
  --query Parameter.Value --output text)
IMAGE=$(jq -r .image <<<"$LAUNCH")
PORT=$(jq -r .port <<<"$LAUNCH")
mapfile -t COMMAND < <(jq -r '.command[]' <<<"$LAUNCH")
ENV_ARGS=()
while IFS= read -r pair; do ENV_ARGS+=(-e "$pair"); done \\
  < <(jq -r '.env | to_entries[] | "\\(.key)=\\(.value)"' <<<"$LAUNCH")
# The token goes to a root-only env file, never into argv (visible to every user) or this script.
install -m 600 /dev/null /run/inferstack.env
if aws secretsmanager describe-secret --region "$REGION" --secret-id {hf_token_secret} >/dev/null 2>&1; then
  printf 'HF_TOKEN=%s\\n' "$(aws secretsmanager get-secret-value --region "$REGION" \\
    --secret-id {hf_token_secret} --query SecretString --output text)" > /run/inferstack.env
fi
mkdir -p /opt/inferstack/hf-cache
docker run -d --name replica --restart unless-stopped --gpus all --ipc host \\
  -p "$PORT:$PORT" --env-file /run/inferstack.env "${{ENV_ARGS[@]}}" \\
  -v /opt/inferstack/hf-cache:/root/.cache/huggingface \\
  --entrypoint "${{COMMAND[0]}}" "$IMAGE" "${{COMMAND[@]:1}}"
"""


def user_data(profile: str, parameter_prefix: str, hf_token_secret: str) -> str:
    """The boot script of a profile's launch template: generic, so one template serves every
    deployment on that profile (and those the controller creates through the REST API)."""
    return USER_DATA.format(profile=profile, deployment_tag=DEPLOYMENT_TAG, log_path=REPLICA_LOG_PATH,
                            document=parameter_name(parameter_prefix, "<deployment>"),
                            parameter=parameter_name(parameter_prefix, '"$DEPLOYMENT"'),
                            hf_token_secret=shlex.quote(hf_token_secret))
