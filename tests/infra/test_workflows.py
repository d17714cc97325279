"""CI/CD: previews with the policy pack on pull requests, up on merge for dev, gated promotion to prod."""

from __future__ import annotations

from typing import Any

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
    assert set(prod["needs"]) == {"image", "up-dev"} and prod["environment"] == "production"
    commands = [s["with"]["command"] for s in steps_using(prod, "pulumi/actions") if "with" in s]
    assert commands == ["preview", "up"]
    for job in (dev, prod):
        assert "needs.image.outputs.image" in str(job["steps"]), "both run the one image built for the commit"
        assert all(s["with"]["policyPacks"] == "policies" for s in steps_using(job, "pulumi/actions") if "with" in s)
