"""The local stack: a control plane process on this machine, and the deployments in it."""

from __future__ import annotations

from program_harness import ROOT, Program

from deployment_resource import RESOURCE_TYPE
from inferstack.declared.stackfile import load_stack_file
from local_process import RESOURCE_TYPE as LOCAL_PROCESS

LOCAL = load_stack_file(ROOT / "stacks/Pulumi.local.yaml")


def test_local_target_runs_the_control_plane_process_and_nothing_in_a_cloud(local: Program) -> None:
    assert not [r for r in local.resources if r["type"].startswith(("aws:", "kubernetes:"))]
    (process,) = local.of_type(LOCAL_PROCESS)
    inputs = process["inputs"]
    assert inputs["command"] == ["inferstack", "serve"]
    assert (inputs["host"], inputs["port"]) == (LOCAL.platform.local.host, LOCAL.platform.local.port)
    assert inputs["home"].endswith("/local"), "one home per stack"
    assert inputs["tenant"] == "platform"
    assert set(inputs["__provider"]) == {"$secret"}, "the key reaches the process only inside the secret provider"


def test_deployments_are_created_in_the_local_control_plane(local: Program) -> None:
    (process,) = local.of_type(LOCAL_PROCESS)
    for deployment in local.of_type(RESOURCE_TYPE):
        assert deployment["inputs"]["url"] == "http://127.0.0.1:8000"
        assert process["urn"] in deployment["dependencies"], "created only once the control plane is up"
    engines = {d["inputs"]["name"]: d["inputs"]["engine"] for d in local.of_type(RESOURCE_TYPE)}
    assert engines == {"chat": "sim", "embed": "sim"}
