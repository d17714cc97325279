"""The prod stack (AWS), as a reviewer reads its `pulumi preview`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from program_harness import ROOT, Program

from inferstack.declared.stackfile import load_stack_file
from inferstack.hardware import PROFILES, aws_instance_type
from inferstack.settings import Env

PROD = load_stack_file(ROOT / "stacks/Pulumi.prod.yaml")
SPECS = {d.name: d for d in PROD.deployments}
MIRROR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/prod-docker-hub"


def launch_templates(prod: Program) -> dict[str, dict]:
    return {r["inputs"]["tags"]["inferstack:profile"]: r for r in prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")}


def groups(prod: Program) -> dict[str, dict]:
    return {r["inputs"]["name"]: r for r in prod.of_type("aws:autoscaling/group:Group")}


def test_one_launch_template_per_profile_in_use_with_its_gpu_instance_type(prod: Program) -> None:
    templates = launch_templates(prod)
    assert sorted(templates) == sorted({"gpu.l4", "gpu.a100-80gb"})
    assert templates["gpu.l4"]["inputs"]["instanceType"] == "g6.xlarge"
    assert templates["gpu.a100-80gb"]["inputs"]["instanceType"] == "p4de.24xlarge"
    for profile, template in templates.items():
        inputs = template["inputs"]
        assert inputs["instanceType"] in PROFILES[profile].aws_instance_types.values()
        assert inputs["metadataOptions"]["httpTokens"] == "required"  # IMDSv2 only
        assert inputs["metadataOptions"]["instanceMetadataTags"] == "enabled"  # the boot script reads its tag
        assert inputs["imageId"] == "ami-0gpu0123456789abc"
    (ami,) = [c for c in prod.calls if c["token"] == "aws:ssm/getParameter:getParameter"]
    assert "deeplearning" in ami["args"]["name"] and "nvidia-driver" in ami["args"]["name"]


def test_user_data_runs_the_vllm_launch_document_and_fetches_the_token_at_boot(prod: Program) -> None:
    script = base64.b64decode(launch_templates(prod)["gpu.l4"]["inputs"]["userData"]).decode()
    assert "aws ssm get-parameter" in script and "/inferstack/prod/deployments/" in script
    assert "aws secretsmanager get-secret-value" in script and "inferstack/prod/hf-token" in script
    assert "docker run" in script and "--gpus all" in script and "--env-file /run/inferstack.env" in script
    assert prod.secrets["hf_token"] not in script
    assert "hf_" not in script.replace("hf-token", "").replace("hf-cache", ""), "no token of any kind"


def test_launch_documents_carry_model_served_names_and_flags(prod: Program) -> None:
    documents = {r["inputs"]["name"].rsplit("/", 1)[1]: json.loads(r["inputs"]["insecureValue"])
                 for r in prod.of_type("aws:ssm/parameter:Parameter")}
    assert sorted(documents) == sorted(SPECS)
    large = documents["chat-large"]
    command = large["command"]
    assert large["image"] == f"{MIRROR}/{PROD.platform.vllm_image}", "pulled through the ECR cache"
    assert command[command.index("--model") + 1] == "meta-llama/Llama-3.1-70B-Instruct"
    assert command[command.index("--tensor-parallel-size") + 1] == "8"
    assert command[command.index("--max-model-len") + 1] == "32768"
    assert "chat-large" in command and large["deployment_id"] in command
    chat = documents["chat"]["command"]
    assert chat[-3:] == ["--gpu-memory-utilization", "0.90", "--enable-prefix-caching"]
    assert all("HF_TOKEN" not in d["env"] for d in documents.values())


def test_replica_groups_leave_capacity_to_the_controller(prod: Program) -> None:
    found = groups(prod)
    assert sorted(found) == sorted(["inferstack-prod-chat-spot", "inferstack-prod-chat-on-demand",
                                    "inferstack-prod-chat-large-on-demand", "inferstack-prod-embed-on-demand"])
    for name, group in found.items():
        assert group["ignore_changes"] == ["desiredCapacity"], name
        deployment = next(t["value"] for t in group["inputs"]["tags"] if t["key"] == "inferstack:deployment")
        spec = SPECS[deployment]
        assert group["inputs"]["maxSize"] == spec.max_replicas and group["inputs"]["minSize"] == 0
        override = group["inputs"]["mixedInstancesPolicy"]["launchTemplate"]["overrides"][0]["instanceType"]
        assert override == aws_instance_type(spec.hardware_profile, spec.gpus_per_replica)
        assert group["inputs"]["protectFromScaleIn"] is True  # the controller chooses who goes, drained first


def test_spot_is_used_only_where_allowed_with_an_on_demand_fallback(prod: Program) -> None:
    found = groups(prod)
    distribution = lambda g: g["inputs"]["mixedInstancesPolicy"]["instancesDistribution"]  # noqa: E731
    spot, fallback = found["inferstack-prod-chat-spot"], found["inferstack-prod-chat-on-demand"]
    assert distribution(spot)["onDemandPercentageAboveBaseCapacity"] == 0
    assert distribution(fallback)["onDemandPercentageAboveBaseCapacity"] == 100
    assert spot["inputs"]["desiredCapacity"] == SPECS["chat"].min_replicas
    assert fallback["inputs"]["desiredCapacity"] == 0
    assert not SPECS["embed"].allow_spot and "inferstack-prod-embed-spot" not in found
    assert distribution(found["inferstack-prod-embed-on-demand"])["onDemandPercentageAboveBaseCapacity"] == 100


def test_secrets_live_in_secrets_manager_and_reach_the_task_by_reference(prod: Program) -> None:
    versions = {r["name"]: r["inputs"]["secretString"]
                for r in prod.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    assert versions == {"inferstack-prod-state-api-key": {"$secret": prod.secrets["api_key"]},
                        "inferstack-prod-state-token-key": {"$secret": prod.secrets["token_key"]},
                        "inferstack-prod-state-hf-token": {"$secret": prod.secrets["hf_token"]}}
    (task,) = prod.of_type("aws:ecs/taskDefinition:TaskDefinition")
    container = json.loads(task["inputs"]["containerDefinitions"])[0]
    assert {s["name"] for s in container["secrets"]} == {Env.BOOTSTRAP_API_KEY, Env.TOKEN_KEY}
    env = {e["name"]: e["value"] for e in container["environment"]}
    # RDS rotates the password every 7 days: the store reads it from RDS's secret, not once from the env.
    assert env["INFERSTACK_DATABASE_PASSWORD_SECRET"].startswith("arn:aws:secretsmanager:")
    assert "PGPASSWORD" not in env
    assert env["INFERSTACK_DATABASE_URL"].startswith("postgresql+psycopg://inferstack@") and ":" not in \
        env["INFERSTACK_DATABASE_URL"].split("@")[0].removeprefix("postgresql+psycopg://")
    assert env["INFERSTACK_FILES_URL"].startswith("s3://")
    (database,) = prod.of_type("aws:rds/instance:Instance")
    assert database["inputs"]["manageMasterUserPassword"] is True and "password" not in database["inputs"]
    assert database["inputs"]["publiclyAccessible"] is False and database["inputs"]["storageEncrypted"] is True


def test_iam_grants_replicas_and_controller_only_what_they_need(prod: Program) -> None:
    policies = {r["name"]: json.loads(r["inputs"]["policy"]) for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")}
    replica = {s["Sid"]: s for s in policies["inferstack-prod-iam-replica"]["Statement"]}
    assert replica["LaunchDocuments"]["Resource"] == "arn:aws:ssm:*:*:parameter/inferstack/prod/deployments/*"
    assert not any(a.startswith(("s3:", "ec2:")) for s in replica.values() for a in s["Action"])
    controller = {s["Sid"]: s for s in policies["inferstack-prod-iam-controller"]["Statement"]}
    for sid in ("ScaleOwnGroups", "DeleteOwnGroups", "StopOwnInstances", "ClaimOwnInstances"):
        assert controller[sid]["Condition"]["StringEquals"] == {"aws:ResourceTag/inferstack:stack": "prod"}, sid
    # Groups and launch documents of API-made deployments: only under names Pulumi never uses.
    for sid in ("CreateOwnGroups", "DeleteOwnGroups"):
        assert controller[sid]["Resource"].endswith("autoScalingGroupName/inferstack-prod-api.*"), sid
    assert controller["WriteOwnLaunchDocuments"]["Resource"].endswith("/inferstack/prod/deployments/api.*")
    assert controller["PassReplicaRoleToEc2Only"]["Resource"].endswith("inferstack-prod-iam-replica")
    assert all(not a.endswith(":*") and a != "*" for p in policies.values() for s in p["Statement"]
               for a in s["Action"]), "no wildcard actions"
    assert all("Describe" in a for a in controller["Inspect"]["Action"]), "unscoped statements only read"


def test_gateway_routes_completions_through_the_load_balancer_not_the_30s_http_api(prod: Program) -> None:
    (alb,) = prod.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb["inputs"]["internal"] is False and alb["inputs"]["idleTimeout"] == 900
    listeners = {r["inputs"]["port"]: r["inputs"] for r in prod.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"].startswith("arn:aws:acm:")
    assert listeners[80]["defaultActions"][0]["type"] == "redirect"
    (target_group,) = prod.of_type("aws:lb/targetGroup:TargetGroup")
    assert target_group["inputs"]["port"] == 8000 and target_group["inputs"]["healthCheck"]["path"] == "/health"
    (service,) = prod.of_type("aws:ecs/service:Service")
    (wiring,) = service["inputs"]["loadBalancers"]
    assert wiring["targetGroupArn"].endswith(f":{target_group['name']}") and wiring["containerPort"] == 8000
    assert service["inputs"]["desiredCount"] == PROD.platform.aws.control_plane_count
    routes = [r["inputs"]["routeKey"] for r in prod.of_type("aws:apigatewayv2/route:Route")]
    assert routes and not any("completions" in r or "embeddings" in r or r.split(" ")[1] == "{proxy+}" for r in routes)
    (integration,) = prod.of_type("aws:apigatewayv2/integration:Integration")
    assert integration["inputs"]["timeoutMilliseconds"] <= 30_000


def test_batch_bucket_is_private_and_encrypted(prod: Program) -> None:
    (block,) = prod.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block["inputs"][k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                    "restrictPublicBuckets"))
    (encryption,) = prod.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert encryption["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"


def test_an_existing_vpc_is_used_instead_of_a_new_one(program: Callable[..., Program]) -> None:
    platform = {"public": True, "vllm_image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm-openai:v0.11.0",
                "aws": {"vpc_id": "vpc-0existing", "public_subnet_ids": ["subnet-pa", "subnet-pb"],
                        "private_subnet_ids": ["subnet-qa", "subnet-qb"]}}
    built = program("stacks/Pulumi.prod.yaml", "--set", f"inferstack:platform={json.dumps(platform)}")
    assert built.error is None, built.error
    for created in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway"):
        assert built.of_type(created) == []
    assert {g["inputs"]["vpcId"] for g in built.of_type("aws:ec2/securityGroup:SecurityGroup")} == {"vpc-0existing"}
    for group in built.of_type("aws:autoscaling/group:Group"):
        assert group["inputs"]["vpcZoneIdentifiers"] == ["subnet-qa", "subnet-qb"]
    (alb,) = built.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb["inputs"]["subnets"] == ["subnet-pa", "subnet-pb"]
    half = {"vllm_image": platform["vllm_image"], "aws": {"vpc_id": "vpc-0existing"}}
    refused = program("stacks/Pulumi.prod.yaml", "--set", f"inferstack:platform={json.dumps(half)}")
    assert refused.error is not None and "inferstack:platform.aws.vpc_id: an existing VPC needs" in refused.error
