"""The control plane on AWS: the runtime image as an ECS Fargate service behind the gateway's target
group, with PostgreSQL for state, S3 for files, and the `aws` provider pointed at this stack's
launch templates and replica groups. Secrets reach the task through ECS `secrets` (Secrets Manager),
never as plain environment values in the task definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws_network import CONTROL_PLANE_PORT
from components.aws_state import DATABASE_NAME, DATABASE_USER
from inferstack.declared.stackfile import AwsSettings, PlatformSettings
from inferstack.providers.aws_groups import STACK_TAG
from inferstack.settings import Env


@dataclass(frozen=True)
class ControlPlaneServiceArgs:
    stack: str
    platform: PlatformSettings
    settings: AwsSettings
    private_subnet_ids: pulumi.Input[list[str]]
    control_plane_sg_id: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    database_address: pulumi.Input[str]
    database_password_secret_arn: pulumi.Input[str]
    api_key_secret_arn: pulumi.Input[str]
    token_key_secret_arn: pulumi.Input[str]
    """INFERSTACK_TOKEN_KEY: the same in every task and across restarts, so stored tokens stay readable."""
    launch_template_ids: dict[str, pulumi.Input[str]]
    parameter_prefix: str
    vllm_image: pulumi.Input[str]
    """As replicas pull it (`aws_images.replica_image`)."""
    declared: list[str]
    """The stack's declared deployments: their groups are Pulumi's, the controller only scales them."""
    depends_on: list[pulumi.Resource]
    """The listener: ECS refuses a target group that no load balancer uses yet."""


class ControlPlaneService(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ControlPlaneServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:ControlPlaneService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {STACK_TAG: args.stack}
        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/inferstack/{args.stack}/control-plane",
                                       retention_in_days=30, tags=tags,
                                       opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        cluster = aws.ecs.Cluster(f"{name}-cluster", settings=[aws.ecs.ClusterSettingArgs(
            name="containerInsights", value="enabled")], tags=tags, opts=child)

        def container_definitions(values: list[object]) -> str:
            (region_name, log_group, bucket, db_host, db_secret, key_secret, token_key_secret, templates, subnets,
             vllm_image) = values
            # Named by the runtime's `Env`: tests/infra/test_environment_contract.py loads this into `Settings`.
            environment = {
                Env.PROVIDER: "aws",
                Env.STACK: args.stack,
                Env.HOME: "/var/lib/inferstack",
                # The password is in neither the URL nor the environment: RDS rotates it every 7 days, so the
                # store reads it from RDS's secret when a connection opens (and again when it is refused).
                Env.DATABASE_URL: f"postgresql+psycopg://{DATABASE_USER}@{db_host}:5432/{DATABASE_NAME}"
                                  "?sslmode=require",
                Env.DATABASE_PASSWORD_SECRET: str(db_secret),
                Env.FILES_URL: f"s3://{bucket}/files",
                Env.AWS_LAUNCH_TEMPLATES: json.dumps(templates, sort_keys=True),
                Env.AWS_PARAMETER_PREFIX: args.parameter_prefix,
                Env.AWS_SUBNETS: ",".join(subnets),  # type: ignore[arg-type]
                Env.VLLM_IMAGE: str(vllm_image),
                Env.AWS_DECLARED_DEPLOYMENTS: ",".join(args.declared),
                Env.RUNTIME_IMAGE: args.platform.image,
                Env.BOOTSTRAP_TENANT: args.platform.tenant,
                Env.AWS_REGION: str(region_name),
            }
            private_registry = ({"repositoryCredentials": {"credentialsParameter": args.settings.image_pull_secret_arn}}
                                if args.settings.image_pull_secret_arn else {})
            return json.dumps([{
                "name": "control-plane",
                "image": args.platform.image,
                **private_registry,
                "essential": True,
                "command": ["inferstack", "serve", "--host", "0.0.0.0", "--port", str(CONTROL_PLANE_PORT)],
                "portMappings": [{"containerPort": CONTROL_PLANE_PORT, "protocol": "tcp"}],
                "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
                "secrets": [{"name": Env.BOOTSTRAP_API_KEY, "valueFrom": key_secret},
                            {"name": Env.TOKEN_KEY, "valueFrom": token_key_secret}],
                "healthCheck": {"command": ["CMD-SHELL", f"curl -fsS http://127.0.0.1:{CONTROL_PLANE_PORT}/health"],
                                "interval": 15, "timeout": 5, "retries": 3, "startPeriod": 30},
                # Drain: streams in flight get up to 2 minutes when a task is replaced.
                "stopTimeout": 120,
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": log_group, "awslogs-region": region_name, "awslogs-stream-prefix": "cp"}},
            }])

        definitions = pulumi.Output.all(
            region, logs.name, args.bucket_name, args.database_address, args.database_password_secret_arn,
            args.api_key_secret_arn, args.token_key_secret_arn, pulumi.Output.all(**args.launch_template_ids),
            args.private_subnet_ids, args.vllm_image).apply(container_definitions)
        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=f"inferstack-{args.stack}-control-plane", requires_compatibilities=["FARGATE"],
            network_mode="awsvpc", cpu=str(args.settings.control_plane_cpu),
            memory=str(args.settings.control_plane_memory_mb), execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn, container_definitions=definitions,
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"),
            tags=tags, opts=child)
        service = aws.ecs.Service(
            f"{name}-service", cluster=cluster.arn, task_definition=task.arn, launch_type="FARGATE",
            # Several tasks on one PostgreSQL database: one leads (advisory lock), every one serves.
            desired_count=args.settings.control_plane_count,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids, security_groups=[args.control_plane_sg_id],
                assign_public_ip=False),
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=args.target_group_arn, container_name="control-plane",
                container_port=CONTROL_PLANE_PORT)],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            health_check_grace_period_seconds=60, wait_for_steady_state=True, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        self.service_name = service.name
        self.task_definition_arn = task.arn
        self.register_outputs({"service": self.service_name, "task_definition": self.task_definition_arn})
