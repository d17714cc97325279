"""What a replica runs on a target, derived from the one spec and the hardware catalogue. Pure.

The container itself (image, command, plain env) and the EC2 launch document come from
`inferstack.engines.container`, shared with the control plane's AWS provider. What is here is only
where a replica runs (scheduling, resources, instance type) and the boot script that fetches its
secrets at boot, never as a literal.
"""

from __future__ import annotations

import shlex

from inferstack.hardware import aws_instance_type
from inferstack.providers.aws_groups import DOCUMENT_TAG, REPLICA_LOG_PATH, parameter_name
from inferstack.spec import DeploymentSpec

# --- AWS -----------------------------------------------------------------------------------------------


def instance_type(spec: DeploymentSpec) -> str:
    found = aws_instance_type(spec.hardware_profile, spec.gpus_per_replica)
    assert found is not None, "stack validation rejects profiles without an instance type"
    return found


USER_DATA = """#!/bin/bash
# inferstack GPU replica ({profile}): runs the launch document named by this instance's
# `{document_tag}` tag. Model, flags and port come from the SSM parameter
# {document}; the Hugging Face token from Secrets Manager at boot.
# No secret is written in this script, in the launch template or in the instance's tags.
# A boot that cannot succeed says why on the console (`aws ec2 get-console-output`) and in
# CloudWatch, and marks the instance unhealthy, so its group replaces it and the controller sees
# the replica fail instead of waiting out its start timeout.
set -euo pipefail
exec > >(tee -a {log_path} /dev/console) 2>&1
IMDS=http://169.254.169.254/latest
INSTANCE=""
REGION=""
fail() {{
  echo "inferstack replica boot FAILED: $*"
  if command -v aws >/dev/null && [ -n "$INSTANCE" ]; then
    aws autoscaling set-instance-health --region "$REGION" --instance-id "$INSTANCE" \\
      --health-status Unhealthy --no-should-respect-grace-period || shutdown -h now
  else
    shutdown -h now  # a stopped instance fails its group's EC2 health check and is replaced
  fi
  exit 1
}}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR
command -v curl >/dev/null || fail "curl is not on this AMI"
TOKEN=$(curl -sS -X PUT "$IMDS/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
meta() {{ curl -fsS -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/meta-data/$1"; }}
REGION=$(meta placement/region)
INSTANCE=$(meta instance-id)
for tool in jq aws docker nvidia-smi; do
  command -v "$tool" >/dev/null || fail "$tool is not on this AMI (it needs jq, the AWS CLI, Docker, the NVIDIA driver)"
done
docker info --format '{{{{json .Runtimes}}}}' | grep -q nvidia \\
  || fail "Docker has no nvidia runtime: the NVIDIA container toolkit is missing from this AMI"
nvidia-smi -L || fail "no GPU visible to the driver"
DOCUMENT=$(meta tags/instance/{document_tag}) || fail "no {document_tag} tag (instance metadata tags off?)"
LAUNCH=$(aws ssm get-parameter --region "$REGION" --name {parameter} \\
  --query Parameter.Value --output text) || fail "cannot read the launch document {parameter}"
IMAGE=$(jq -r .image <<<"$LAUNCH")
PORT=$(jq -r .port <<<"$LAUNCH")
mapfile -t COMMAND < <(jq -r '.command[]' <<<"$LAUNCH")
# S3 LoRA adapters (if any): fetched by the runtime image before the engine starts, into what it reads.
FETCH_IMAGE=$(jq -r '.fetch_image // empty' <<<"$LAUNCH")
mapfile -t FETCH < <(jq -r '.fetch_command[]?' <<<"$LAUNCH")
ADAPTERS_DIR=$(jq -r '.adapters_dir // "/adapters"' <<<"$LAUNCH")
ENV_ARGS=()
while IFS= read -r pair; do ENV_ARGS+=(-e "$pair"); done \\
  < <(jq -r '.env | to_entries[] | "\\(.key)=\\(.value)"' <<<"$LAUNCH")
# The token goes to a root-only env file, never into argv (visible to every user) or this script.
install -m 600 /dev/null /run/inferstack.env
if aws secretsmanager describe-secret --region "$REGION" --secret-id {hf_token_secret} >/dev/null 2>&1; then
  printf 'HF_TOKEN=%s\\n' "$(aws secretsmanager get-secret-value --region "$REGION" \\
    --secret-id {hf_token_secret} --query SecretString --output text)" > /run/inferstack.env
fi
# Images from ECR (the pull-through cache of Docker Hub): log in with the instance role.
for PULL in "$IMAGE" $FETCH_IMAGE; do
  REGISTRY=${{PULL%%/*}}
  if [[ "$REGISTRY" == *.dkr.ecr.*.amazonaws.com ]]; then
    aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY" \\
      || fail "cannot log in to $REGISTRY"
  fi
  docker pull "$PULL" || fail "cannot pull $PULL"
done
mkdir -p /opt/inferstack/hf-cache /opt/inferstack/adapters
if [ -n "$FETCH_IMAGE" ]; then
  # With the instance role (the launch template lets a container reach instance metadata).
  docker run --rm -e AWS_REGION="$REGION" -v "/opt/inferstack/adapters:$ADAPTERS_DIR" \\
    --entrypoint "${{FETCH[0]}}" "$FETCH_IMAGE" "${{FETCH[@]:1}}" || fail "cannot fetch the LoRA adapters from S3"
fi
# The replica's own output goes to CloudWatch, one stream per instance: readable after the instance is gone.
docker run -d --name replica --restart unless-stopped --gpus all --ipc host \\
  --log-driver awslogs --log-opt awslogs-region="$REGION" --log-opt awslogs-group={replica_log_group} \\
  --log-opt awslogs-stream="$INSTANCE" \\
  -p "$PORT:$PORT" --env-file /run/inferstack.env "${{ENV_ARGS[@]}}" \\
  -v /opt/inferstack/hf-cache:/root/.cache/huggingface -v "/opt/inferstack/adapters:$ADAPTERS_DIR:ro" \\
  --entrypoint "${{COMMAND[0]}}" "$IMAGE" "${{COMMAND[@]:1}}"
# Its own health check: the engine answers /health, or the container has stopped for good.
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
  [ "$(docker inspect -f '{{{{.RestartCount}}}}' replica)" -lt 3 ] \\
    || fail "the replica keeps exiting: $(docker logs --tail 20 replica 2>&1 | tr '\\n' ' ')"
  sleep 10
done
echo "inferstack replica ready on port $PORT"
"""


def user_data(profile: str, parameter_prefix: str, hf_token_secret: str, replica_log_group: str) -> str:
    """The boot script of a profile's launch template: generic, so one template serves every
    deployment on that profile (and those the controller creates through the REST API)."""
    return USER_DATA.format(profile=profile, document_tag=DOCUMENT_TAG, log_path=REPLICA_LOG_PATH,
                            document=parameter_name(parameter_prefix, "<document>"),
                            parameter=parameter_name(parameter_prefix, '"$DOCUMENT"'),
                            hf_token_secret=shlex.quote(hf_token_secret),
                            replica_log_group=shlex.quote(replica_log_group))
