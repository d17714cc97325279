"""What holds on every target: the declared deployments become control-plane resources, secrets stay
secrets, and every resource sits in a component with a name derived from it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from program_harness import ROOT, Program

from deployment_resource import RESOURCE_TYPE
from inferstack.declared.stackfile import load_stack_file
from inferstack.spec import SPEC_FIELDS

STACKS = {"local": "stacks/Pulumi.local.yaml", "dev": "stacks/Pulumi.dev.yaml", "prod": "stacks/Pulumi.prod.yaml"}


@pytest.fixture(params=list(STACKS))
def built(request: pytest.FixtureRequest) -> tuple[str, Program]:
    return request.param, request.getfixturevalue(request.param)


def test_each_declared_deployment_is_a_control_plane_resource_with_its_spec(built: tuple[str, Program]) -> None:
    stack, program = built
    declared = load_stack_file(ROOT / STACKS[stack]).deployments
    resources = {r["inputs"]["name"]: r for r in program.of_type(RESOURCE_TYPE)}
    assert sorted(resources) == sorted(d.name for d in declared)
    for spec in declared:
        inputs = resources[spec.name]["inputs"]
        expected = {k: v for k, v in spec.model_dump(mode="json", exclude={"hf_token"}).items() if v is not None}
        # Every set spec field is its own property, so `pulumi preview` diffs field by field.
        assert {k: inputs[k] for k in SPEC_FIELDS if k in inputs} == expected
        assert inputs["url"].startswith("http"), "the deployment is created in this stack's control plane"


def test_no_secret_appears_in_plain_text_anywhere(built: tuple[str, Program]) -> None:
    _, program = built
    assert program.plaintext_paths(program.secrets["hf_token"]) == []
    assert program.plaintext_paths(program.secrets["api_key"]) == []
    assert program.plaintext_paths(program.secrets["token_key"]) == []


def test_token_reaches_deployments_only_as_a_secret_and_never_as_an_output(built: tuple[str, Program]) -> None:
    _, program = built
    for resource in program.of_type(RESOURCE_TYPE):
        assert resource["inputs"]["hf_token"] == {"$secret": program.secrets["hf_token"]}
        assert "hf_token" in resource["additional_secret_outputs"]
        # The API key travels inside the serialized provider, which is always a secret.
        assert set(resource["inputs"]["__provider"]) == {"$secret"}


def test_every_resource_is_parented_by_a_component_and_named_after_it(built: tuple[str, Program]) -> None:
    stack, program = built
    components = {r["urn"]: r for r in program.resources if not r["custom"]}
    for resource in program.resources:
        parent = program.by_urn(resource["parent"])
        if not resource["custom"] and parent is None:
            assert resource["name"].startswith(f"inferstack-{stack}"), resource["name"]
            continue
        assert resource["parent"] in components, f"{resource['name']} is not inside a component"
        assert resource["name"].startswith(components[resource["parent"]]["name"]), (
            f"{resource['name']} is not named after {components[resource['parent']]['name']}")


@pytest.mark.parametrize("stack", list(STACKS))
def test_program_runs_as_a_preview(stack: str, program: Callable[..., Program]) -> None:
    # `pulumi preview` runs the program as a dry run: it must declare the same resources as `up`.
    previewed = program(STACKS[stack], "--preview")
    assert previewed.error is None, previewed.error
    full = program(STACKS[stack])
    assert sorted((r["type"], r["name"]) for r in previewed.resources) == sorted(
        (r["type"], r["name"]) for r in full.resources)


def test_pulumi_project_points_at_the_program_and_the_stack_files() -> None:
    import yaml
    from program_harness import ROOT

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["main"] == "infra/"
    assert project["stackConfigDir"] == "stacks" and (ROOT / "infra/__main__.py").exists()
    committed = sorted(p.name for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
    assert committed == [f"Pulumi.{s}.yaml" for s in sorted(STACKS)]
