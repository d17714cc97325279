"""`inferstack serve` with INFERSTACK_PROVIDER=aws against the moto AWS server: the controller drives
the aws provider. Moto launches no real machine, so a replica never becomes healthy; what can be
seen is the deployment's Auto Scaling group, its desired capacity and the instance it launched."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from inferstack.providers.aws_groups import group_name
from kube_cluster import running_cluster
from support import ControlPlane, leader_and_follower, wait_adopted, wait_for

STACK = "e2e"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def blank_account(endpoint: str) -> dict[str, str]:
    """Reset moto, create a subnet and a gpu.l4 launch template as `infra` would; return serve's env."""
    httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm*"]}])[
        "Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"inferstack-{STACK}-gpu-l4",
        LaunchTemplateData={"ImageId": ami, "InstanceType": "g6.xlarge",
                            "UserData": base64.b64encode(b"#!/bin/bash\n").decode()},
    )["LaunchTemplate"]["LaunchTemplateId"]
    return {**AWS_ENV, "INFERSTACK_PROVIDER": "aws", "AWS_ENDPOINT_URL": endpoint, "INFERSTACK_STACK": STACK,
            "INFERSTACK_AWS_LAUNCH_TEMPLATES": json.dumps({"gpu.l4": template}),
            "INFERSTACK_AWS_SUBNETS": subnet}


def groups(endpoint: str) -> dict[str, dict[str, Any]]:
    asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    return {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}


def test_the_controller_grows_the_deployments_group_and_deletes_it_with_the_deployment(
        moto_endpoint: str, tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home", env_extra=blank_account(moto_endpoint)).start()
    try:
        key = plane.create_key("cloud-team")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={"name": "chat", "hf_model_id": "acme/tiny-chat",
                                                     "hardware_profile": "gpu.l4", "max_model_len": 4096})
        assert created.status_code == 201, created.text
        group = group_name(STACK, "chat", "on-demand", owner="controller")  # an API-made deployment's
        launched = wait_for(lambda: (g := groups(moto_endpoint).get(group)) and g["Instances"] and g, timeout=30,
                            what=f"an instance in {group}")
        assert launched["DesiredCapacity"] == 1 and len(launched["Instances"]) == 1
        replica = wait_for(lambda: rest.get(f"/v1/deployments/{created.json()['id']}").json()["replicas"],
                           timeout=10, what="the replica")[0]
        assert replica["status"] == "starting" and replica["url"].startswith("http://10.0.1.")

        assert rest.delete(f"/v1/deployments/{created.json()['id']}").status_code == 200
        wait_for(lambda: group not in groups(moto_endpoint), timeout=30, what=f"{group} deleted")
        assert instances(moto_endpoint)[launched["Instances"][0]["InstanceId"]] in ("shutting-down", "terminated")
    finally:
        plane.stop()


def instances(endpoint: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    return {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]}


@pytest.mark.postgres
def test_a_rolling_stop_of_the_leader_hands_its_instances_over(moto_endpoint: str, tmp_path: Path) -> None:
    with leader_and_follower(tmp_path, blank_account(moto_endpoint)) as (leader, follower):
        key = leader.create_key("cloud-team")
        created = leader.client(key).post("/v1/deployments", json={
            "name": "chat", "hf_model_id": "acme/tiny-chat", "hardware_profile": "gpu.l4"})
        assert created.status_code == 201, created.text
        group = group_name(STACK, "chat", "on-demand", owner="controller")  # an API-made deployment's
        launched = wait_for(lambda: (g := groups(moto_endpoint).get(group)) and g["Instances"] and g,
                            timeout=30, what=f"an instance in {group}")
        (instance_id,) = [i["InstanceId"] for i in launched["Instances"]]
        dep_id = created.json()["id"]
        (replica_id,) = wait_for(lambda: [r["id"] for r in leader.client(key).get(
            f"/v1/deployments/{dep_id}/replicas").json()["data"]], timeout=30, what="the replica's row")
        time.sleep(1.5)  # the follower has said it is alive (every second)

        leader.stop(signal.SIGTERM)  # as ECS or Kubernetes does in a rolling deploy
        rest = follower.client(key)
        wait_adopted(follower, key, dep_id)
        assert instances(moto_endpoint)[instance_id] == "running"  # never stopped
        after = groups(moto_endpoint)[group]
        assert after["DesiredCapacity"] == 1 and [i["InstanceId"] for i in after["Instances"]] == [instance_id]
        # The same replica under its id, not a new one claiming the instance (nor started again).
        assert f"keeping replica {replica_id}: instance {instance_id}" in follower.log_text()
        time.sleep(1.0)  # ten ticks of the new leader: a replacement would have been asked for by now
        rows = rest.get(f"/v1/deployments/{dep_id}/replicas", params={"all": "true"}).json()["data"]
        assert [(r["id"], r["status"]) for r in rows] == [(replica_id, "starting")], rows
        assert "adopting unclaimed instance" not in follower.log_text()


def test_sg_inf_placement_fields_are_honoured_and_shown(moto_endpoint: str, tmp_path: Path) -> None:
    """On a control plane that runs the Kubernetes and AWS providers, the platform's placement fields
    become the deployment's placement (no replica is started: min_workers 0)."""
    with running_cluster(tmp_path / "pods") as cluster:
        env = {**blank_account(moto_endpoint), "INFERSTACK_PROVIDERS": "kubernetes,aws",
               "INFERSTACK_K8S_NAMESPACE": "inferstack",
               "KUBECONFIG": str(cluster.kubeconfig(tmp_path / "kubeconfig", "inferstack"))}
        plane = ControlPlane(home=tmp_path / "home", env_extra=env).start()
        try:
            alice = plane.client(plane.create_key("alice"))
            created = alice.post("/sg_inf/create", json={
                "name": "sg-burst", "model": "meta-llama/Llama-3.1-8B-Instruct", "cloud_providers": ["AWS"],
                "initial_worker_config": {"min_workers": 0, "initial_workers_gpu": "L4", "use_on_prem": True,
                                          "on_prem_node_ids": ["gpu-node-7"], "use_cloudburst": True,
                                          "instance_types": ["g6.12xlarge"]}})
            assert created.status_code == 200, created.text
            inf_id = created.json()["message"]["inf_id"]
            spec = alice.get(f"/sg_inf/{inf_id}").json()["message"]["spec"]
            assert spec["providers"] == ["kubernetes", "aws"] and spec["cloudburst"] is True
            assert (spec["node_names"], spec["instance_types"]) == (["gpu-node-7"], ["g6.12xlarge"])
            updated = alice.put(f"/sg_inf/{inf_id}", json={"initial_worker_config": {"use_cloudburst": False}})
            assert updated.json()["success"] is True
            assert alice.get(f"/sg_inf/{inf_id}").json()["message"]["spec"]["cloudburst"] is False
            assert alice.delete(f"/sg_inf/{inf_id}").json()["success"] is True
        finally:
            plane.stop()
