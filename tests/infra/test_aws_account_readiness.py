"""The prod stack as a real AWS account would take it: what the mocks alone could not see (issue 14).

The inputs are checked against what AWS enforces: IAM documents with `parliament`, request shapes with
botocore's API models, the HTTP API's path mapping with the rules API Gateway applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from parliament import analyze_policy_string, enhance_finding
from program_harness import ROOT, Program

SEVERITY = {"INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
PARLIAMENT_OUT_OF_DATE = {"ecr:BatchImportUpstreamImage"}
"""parliament 1.6.4's IAM data gives this action no resource type; AWS's own pull-through-cache policy
examples scope it to a repository ARN, which is what the replica role does (narrower than "*")."""


def policy_documents(prod: Program) -> dict[str, str]:
    """Identity and bucket policies (trust policies have no resources: parliament does not read them)."""
    found = {r["name"]: r["inputs"]["policy"] for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")}
    found |= {r["name"]: r["inputs"]["policy"] for r in prod.of_type("aws:s3/bucketPolicy:BucketPolicy")}
    return found


def findings_above_low(document: str) -> list[str]:
    out = []
    for finding in map(enhance_finding, analyze_policy_string(document).findings):
        actions = {d.get("action") for d in finding.detail} if isinstance(finding.detail, list) else set()
        if finding.issue == "RESOURCE_MISMATCH" and actions and actions <= PARLIAMENT_OUT_OF_DATE:
            continue
        if SEVERITY.get(finding.severity, 4) > SEVERITY["LOW"]:
            out.append(f"{finding.severity} {finding.issue}: {finding.detail}")
    return out


def test_every_iam_document_passes_parliament(prod: Program) -> None:
    documents = policy_documents(prod)
    assert {"inferstack-prod-iam-replica", "inferstack-prod-iam-controller", "inferstack-prod-iam-controller-launch",
            "inferstack-prod-state-files-tls-only"} <= set(documents)
    problems = {name: found for name, document in documents.items() if (found := findings_above_low(document))}
    assert problems == {}


def statements(prod: Program, name: str) -> dict[str, dict[str, Any]]:
    (document,) = [r["inputs"]["policy"] for r in prod.of_type("aws:iam/rolePolicy:RolePolicy") if r["name"] == name]
    return {s["Sid"]: s for s in json.loads(document)["Statement"]}


def test_the_controller_launches_only_from_the_stacks_templates_and_tags_nothing_into_scope(prod: Program) -> None:
    templates = sorted(r["name"] for r in prod.of_type("aws:ec2/launchTemplate:LaunchTemplate"))
    launch = statements(prod, "inferstack-prod-iam-controller-launch")
    controller = statements(prod, "inferstack-prod-iam-controller")
    every = [s for doc in (launch, controller) for s in doc.values()]
    for statement in every:
        actions = statement["Action"]
        if "ec2:RunInstances" in actions:
            arns = statement["Condition"]["ArnLike"]["ec2:LaunchTemplate"]
            assert sorted(a.rsplit("/", 1)[1].removesuffix("-id") for a in arns) == templates
        if "ec2:CreateTags" in actions:
            condition = statement["Condition"]
            on_launch = condition.get("StringEquals", {}).get("ec2:CreateAction") == "RunInstances"
            claim_keys = condition.get("ForAllValues:StringEquals", {}).get("aws:TagKeys")
            assert on_launch or (claim_keys and "inferstack:stack" not in claim_keys and
                                 condition["StringEquals"] == {"aws:ResourceTag/inferstack:stack": "prod"}), statement
    assert controller["PassReplicaRoleToEc2Only"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


# --- the API Gateway option: route -> backend URI -----------------------------------------------------------


def http_api_backend(route_key: str, path: str, integration: dict[str, Any]) -> str | None:
    """What API Gateway (HTTP API, HTTP_PROXY) sends to the integration for a request `path`, or None
    when the route does not match: `{name}` / `{proxy+}` route variables fill the URI's `{name}`
    placeholders, and `overwrite:path` (parameter mapping) replaces the path."""
    _method, template = route_key.split(" ", 1)
    pattern = re.escape(template).replace(r"\{proxy\+\}", "(?P<proxy>.+)")
    matched = re.fullmatch(pattern, path)
    if matched is None:
        return None
    uri = integration["integrationUri"]
    for name, value in matched.groupdict().items():
        uri = uri.replace("{" + name + "}", value)
    mapped = (integration.get("requestParameters") or {}).get("overwrite:path")
    base = re.match(r"https?://[^/]+", uri)
    assert base is not None
    if mapped == "$request.path":
        return base.group(0) + path
    assert "{" not in uri, f"route {route_key} leaves {uri} with an unfilled placeholder"
    return uri


@pytest.mark.parametrize("path", ["/v1/deployments", "/v1/deployments/dep-abc", "/v1/deployments/dep-abc/events",
                                  "/v1/models", "/health"])
def test_http_api_routes_reach_the_same_path_on_the_control_plane(prod: Program, path: str) -> None:
    (integration,) = prod.of_type("aws:apigatewayv2/integration:Integration")
    routes = [r["inputs"]["routeKey"] for r in prod.of_type("aws:apigatewayv2/route:Route")]
    backends = {route: http_api_backend(route, path, integration["inputs"]) for route in routes}
    reached = {b for b in backends.values() if b is not None}
    assert reached == {f"https://inference.example.com{path}"}


def test_the_integration_is_a_request_aws_accepts(prod: Program) -> None:
    (integration,) = prod.of_type("aws:apigatewayv2/integration:Integration")
    inputs = integration["inputs"]
    shape = botocore.session.get_session().get_service_model("apigatewayv2").operation_model(
        "CreateIntegration").input_shape
    request = {"ApiId": "abc123", "IntegrationType": inputs["integrationType"],
               "IntegrationMethod": inputs["integrationMethod"], "IntegrationUri": inputs["integrationUri"],
               "PayloadFormatVersion": inputs["payloadFormatVersion"],
               "TimeoutInMillis": int(inputs["timeoutMilliseconds"]), "RequestParameters": inputs["requestParameters"]}
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    # HTTP APIs take `overwrite:path` only with these values as its source (API Gateway's parameter mapping).
    assert set(inputs["requestParameters"]) == {"overwrite:path"}


# --- the URL the dynamic provider and users call -------------------------------------------------------------


def test_the_url_is_the_certificates_domain_with_its_dns_record(prod: Program) -> None:
    (record,) = prod.of_type("aws:route53/record:Record")
    assert record["inputs"]["name"] == "inference.example.com" and record["inputs"]["type"] == "A"
    assert record["inputs"]["aliases"][0]["name"].endswith(".elb.amazonaws.com")
    urls = {r["inputs"]["url"] for r in prod.of_type("pulumi-python:dynamic/inferstack:Deployment")}
    assert urls == {"https://inference.example.com"}, "never https://<ALB DNS name>: the certificate is not for it"


# --- state, names, timeouts ---------------------------------------------------------------------------------


def test_the_batch_bucket_refuses_plain_http_and_expires_old_files(prod: Program) -> None:
    (policy,) = prod.of_type("aws:s3/bucketPolicy:BucketPolicy")
    (deny,) = json.loads(policy["inputs"]["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny["Resource"]) == 2 and deny["Resource"][1] == deny["Resource"][0] + "/*"
    (lifecycle,) = prod.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    (rule,) = lifecycle["inputs"]["rules"]
    assert rule["status"] == "Enabled" and rule["expiration"]["days"] == 30 and rule["filter"]["prefix"] == "files/"
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1


def test_prods_stateful_resources_are_protected(prod: Program) -> None:
    for type_ in ("aws:rds/instance:Instance", "aws:s3/bucket:Bucket"):
        (resource,) = prod.of_type(type_)
        assert resource["protect"] is True, type_


FIXED_NAME_TYPES = ("aws:autoscaling/group:Group", "aws:ssm/parameter:Parameter", "aws:secretsmanager/secret:Secret",
                    "aws:cloudwatch/logGroup:LogGroup", "aws:route53/record:Record")


def test_a_resource_with_a_fixed_name_is_deleted_before_it_is_replaced(prod: Program) -> None:
    """Create-before-delete (Pulumi's default) of a resource whose name is fixed fails: the name is taken."""
    fixed = [r for r in prod.resources if r["type"] in FIXED_NAME_TYPES and "name" in r["inputs"]]
    assert len(fixed) >= 8
    assert [r["name"] for r in fixed if not r["delete_before_replace"]] == []


def test_pulumi_up_does_not_wait_for_gpu_capacity(prod: Program) -> None:
    """GPU capacity can take longer than any sensible `pulumi up`, and the controller waits for it."""
    for group in prod.of_type("aws:autoscaling/group:Group"):
        assert group["inputs"]["waitForCapacityTimeout"] == "0" and group["inputs"]["forceDelete"] is True


# --- images ---------------------------------------------------------------------------------------------------


def test_images_come_through_the_pull_through_cache_and_the_private_registry_with_credentials(
        prod: Program) -> None:
    (rule,) = prod.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert rule["inputs"]["upstreamRegistryUrl"] == "registry-1.docker.io"
    assert rule["inputs"]["credentialArn"].split(":secret:")[1].startswith("ecr-pullthroughcache/")
    (task,) = prod.of_type("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = json.loads(task["inputs"]["containerDefinitions"])
    assert container["repositoryCredentials"]["credentialsParameter"].startswith("arn:aws:secretsmanager:")
    execution = statements(prod, "inferstack-prod-iam-execution-secrets")["TaskSecrets"]
    assert container["repositoryCredentials"]["credentialsParameter"] in execution["Resource"]



def test_kubernetes_replica_rollouts_get_a_gpu_sized_await(dev: Program) -> None:
    deployments = [d for d in dev.of_type("kubernetes:apps/v1:Deployment")
                   if d["inputs"]["metadata"]["name"].startswith("replicas-")]
    assert deployments
    for deployment in deployments:
        assert int(deployment["inputs"]["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) >= 30 * 60


def test_replicas_read_only_the_adapter_buckets_the_stack_names_and_fetch_at_launch(
        prod: Program, program: Callable[..., Program]) -> None:
    for role in ("inferstack-prod-iam-replica", "inferstack-prod-iam-controller"):
        assert not [sid for sid in statements(prod, role) if sid.startswith("AdapterBuckets")]
    config = yaml.safe_load((ROOT / "stacks/Pulumi.prod.yaml").read_text())["config"]
    platform = config["inferstack:platform"]
    platform["aws"]["adapter_buckets"] = ["team-adapters"]
    deployments = config["inferstack:deployments"]
    deployments[0]["adapters"] = [{"name": "sql", "source": "s3://declared-adapters/chat/sql"}]
    built = program("stacks/Pulumi.prod.yaml", "--set", f"inferstack:platform={json.dumps(platform)}",
                    "--set", f"inferstack:deployments={json.dumps(deployments)}")
    assert built.error is None, built.error
    assert {n: f for n, d in policy_documents(built).items() if (f := findings_above_low(d))} == {}
    replica, controller = (statements(built, f"inferstack-prod-iam-{r}") for r in ("replica", "controller"))
    buckets = ["arn:aws:s3:::declared-adapters", "arn:aws:s3:::team-adapters"]
    assert replica["AdapterBucketsList"]["Resource"] == controller["AdapterBucketsList"]["Resource"] == buckets
    assert replica["AdapterBucketsRead"] == {"Sid": "AdapterBucketsRead", "Effect": "Allow", "Action": ["s3:GetObject"],
                                             "Resource": [f"{b}/*" for b in buckets]}
    assert "AdapterBucketsRead" not in controller  # it lists to check; the replicas download
    documents = {r["inputs"]["name"].rsplit("/", 1)[1]: json.loads(r["inputs"]["insecureValue"])
                 for r in built.of_type("aws:ssm/parameter:Parameter")}
    assert documents["chat"]["fetch_command"][-1] == "sql=s3://declared-adapters/chat/sql"
    assert "fetch_command" not in documents["embed"]
