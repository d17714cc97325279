"""The GPU replica's boot script, run by bash against stand-ins for what an instance has (instance
metadata, the AWS CLI, Docker, the NVIDIA driver): it checks for what it needs and fails loudly
(console, CloudWatch, the group told the instance is unhealthy) rather than leave a silent instance.
A real AMI can only be checked on a real account (docs/aws.md says what to look at)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.replica import user_data
from inferstack.providers.aws_groups import REPLICA_LOG_PATH

DOCUMENT = {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/prod-docker-hub/vllm/vllm-openai:v0.11.0",
            "port": 8000, "command": ["vllm", "serve", "acme/tiny"], "env": {"VLLM_LOGGING_LEVEL": "INFO"}}
REAL_TOOLS = ("bash", "tee", "tr", "mkdir", "install", "grep", "sleep", "jq", "cat", "head", "env", "touch")

STUBS = {
    "curl": """#!/bin/bash
case "$*" in
  *api/token*) echo tok ;;
  *placement/region*) echo us-east-1 ;;
  *meta-data/instance-id*) echo i-0test ;;
  *tags/instance/inferstack:document*) echo chat ;;
  *8000/health*) [ -e "$STATE/healthy" ] ;;
  *) exit 22 ;;
esac""",
    "aws": """#!/bin/bash
echo "aws $*" >> "$STATE/calls"
case "$*" in
  *ssm\\ get-parameter*) cat "$STATE/document" ;;
  *secretsmanager\\ describe-secret*) exit 254 ;;
  *ecr\\ get-login-password*) echo ecr-password ;;
esac""",
    "docker": """#!/bin/bash
echo "docker $*" >> "$STATE/calls"
case "$1" in
  info) cat "$STATE/runtimes" ;;
  run) case "$*" in *fetch-adapters*) [ ! -e "$STATE/no-adapters" ] ;; *) touch "$STATE/healthy" ;; esac ;;
  inspect) echo 0 ;;
  login) cat >/dev/null ;;
esac""",
    "nvidia-smi": "#!/bin/bash\necho 'GPU 0: NVIDIA L4'",
    "shutdown": """#!/bin/bash\necho "shutdown $*" >> "$STATE/calls\"""",
}


def boot(tmp_path: Path, missing: tuple[str, ...] = (), runtimes: str = '{"nvidia":{},"runc":{}}',
         document: dict[str, Any] = DOCUMENT, adapters_in_s3: bool = True) -> tuple[int, str, str]:
    """Run the boot script; returns (exit code, what reached the console, the stand-ins' calls)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in REAL_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, body in STUBS.items():
        if name not in missing:
            (bin_dir / name).write_text(body + "\n")
            (bin_dir / name).chmod(0o755)
    (state / "document").write_text(json.dumps(document))
    if not adapters_in_s3:
        (state / "no-adapters").touch()
    (state / "runtimes").write_text(runtimes)
    (state / "calls").touch()
    script = user_data("gpu.l4", "/inferstack/prod/deployments", "inferstack/prod/hf-token",
                       "/inferstack/prod/replicas")
    # Where an instance writes, redirected into the test's directory.
    for path, local in {"/dev/console": state / "console", REPLICA_LOG_PATH: state / "boot.log",
                        "/run/inferstack.env": state / "env", "/opt/inferstack": state / "opt"}.items():
        script = script.replace(path, str(local))
    done = subprocess.run([str(bin_dir / "bash"), "-c", script], env={"PATH": str(bin_dir), "STATE": str(state)},
                          capture_output=True, text=True, timeout=60)
    console = (state / "console").read_text() if (state / "console").exists() else ""
    return done.returncode, console, (state / "calls").read_text()


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_a_healthy_boot_logs_in_to_ecr_ships_logs_and_waits_for_health(tmp_path: Path) -> None:
    code, console, calls = boot(tmp_path)
    assert code == 0, console
    assert "inferstack replica ready on port 8000" in console
    assert "aws ecr get-login-password --region us-east-1" in calls
    assert "docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com" in calls
    (run,) = [line for line in calls.splitlines() if line.startswith("docker run")]
    assert "--log-driver awslogs" in run and "awslogs-group=/inferstack/prod/replicas" in run
    assert "awslogs-stream=i-0test" in run and "set-instance-health" not in calls


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_an_ami_without_the_nvidia_toolkit_fails_loudly_and_marks_the_instance_unhealthy(tmp_path: Path) -> None:
    code, console, calls = boot(tmp_path, runtimes='{"runc":{}}')
    assert code == 1
    assert "boot FAILED: Docker has no nvidia runtime" in console
    assert ("aws autoscaling set-instance-health --region us-east-1 --instance-id i-0test --health-status "
            "Unhealthy --no-should-respect-grace-period") in calls
    assert "docker run" not in calls


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_an_ami_without_the_aws_cli_says_so_and_shuts_down(tmp_path: Path) -> None:
    code, console, calls = boot(tmp_path, missing=("aws",))
    assert code == 1
    assert "aws is not on this AMI" in console and "shutdown -h now" in calls


RUNTIME = "ghcr.io/inferstack/inferstack:0.1.0"
WITH_ADAPTERS = {**DOCUMENT, "fetch_image": RUNTIME, "adapters_dir": "/adapters", "fetch_command": [
    "python3", "-m", "inferstack", "fetch-adapters", "--into", "/adapters", "sql=s3://adapters/team/sql"]}


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_s3_adapters_are_fetched_by_the_runtime_image_before_the_engine_starts_and_mounted_for_it(
        tmp_path: Path) -> None:
    code, console, calls = boot(tmp_path, document=WITH_ADAPTERS)
    assert code == 0, console
    runs = [line for line in calls.splitlines() if line.startswith("docker run")]
    assert len(runs) == 2 and f"docker pull {RUNTIME}" in calls
    fetch, engine = runs
    assert fetch.endswith(f"--entrypoint python3 {RUNTIME} -m inferstack fetch-adapters --into /adapters "
                          "sql=s3://adapters/team/sql")
    assert "-v opt/adapters:/adapters " in fetch.replace(str(tmp_path / "state") + "/", "")
    assert "opt/adapters:/adapters:ro" in engine.replace(str(tmp_path / "state") + "/", "")


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_adapters_that_cannot_be_fetched_fail_the_boot_before_the_engine_starts(tmp_path: Path) -> None:
    code, console, calls = boot(tmp_path, document=WITH_ADAPTERS, adapters_in_s3=False)
    assert code == 1 and "boot FAILED: cannot fetch the LoRA adapters from S3" in console
    assert "set-instance-health" in calls and len([c for c in calls.splitlines() if c.startswith("docker run")]) == 1
