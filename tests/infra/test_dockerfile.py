"""The runtime image and the targets that run it agree (user, port, command): no docker engine needed."""

from __future__ import annotations

import json
import re

from program_harness import ROOT, Program

DOCKERFILE = (ROOT / "runtime/Dockerfile").read_text()


def test_image_runs_the_control_plane_as_the_user_and_port_the_targets_expect(dev: Program, prod: Program) -> None:
    assert re.search(r"^USER 10001$", DOCKERFILE, re.M)
    assert 'CMD ["inferstack", "serve", "--host", "0.0.0.0", "--port", "8000"]' in DOCKERFILE
    control_plane = dev.named("inferstack-dev-control-plane", "kubernetes:apps/v1:Deployment")
    k8s = control_plane["inputs"]["spec"]["template"]["spec"]
    assert k8s["securityContext"]["runAsUser"] == 10001
    assert k8s["containers"][0]["command"] == ["inferstack", "serve", "--host", "0.0.0.0", "--port", "8000"]
    (task,) = prod.of_type("aws:ecs/taskDefinition:TaskDefinition")
    container = json.loads(task["inputs"]["containerDefinitions"])[0]
    assert container["command"] == ["inferstack", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "curl" in container["healthCheck"]["command"][1] and "curl" in DOCKERFILE  # the health check's tool
