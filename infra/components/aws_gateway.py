"""The way in on AWS: an Application Load Balancer in front of the control plane for every route,
and optionally an API Gateway HTTP API for the management routes only.

API Gateway HTTP APIs cut an integration at 30 s: a long non-streamed completion, or any stream,
would be cut mid-answer. So the OpenAI routes (completions, chat, embeddings, batches' files) go
through the ALB, whose idle timeout is configurable up to 4000 s; the HTTP API, when asked for,
carries only the short management calls (deployments, models) with its throttling and access logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws_network import CONTROL_PLANE_PORT
from inferstack.declared.stackfile import AwsSettings
from inferstack.providers.aws_groups import STACK_TAG

HTTP_API_ROUTES = ("ANY /v1/deployments", "ANY /v1/deployments/{proxy+}", "GET /v1/models", "GET /health")
"""The short management routes the HTTP API may carry; never completions (30 s integration cap)."""
HTTP_API_TIMEOUT_MS = 30_000
FORWARD_PATH = {"overwrite:path": "$request.path"}
"""HTTP API parameter mapping: the integration receives the path the caller sent, unchanged."""


@dataclass(frozen=True)
class GatewayArgs:
    stack: str
    settings: AwsSettings
    public: bool
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[list[str]]
    private_subnet_ids: pulumi.Input[list[str]]
    load_balancer_sg_id: pulumi.Input[str]


class Gateway(pulumi.ComponentResource):
    url: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    listener_arn: pulumi.Output[str]
    load_balancer_dns_name: pulumi.Output[str]
    """Where a CNAME for domain_name points when the stack does not manage its DNS (no hosted_zone_id)."""
    management_url: pulumi.Output[str] | None

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        tags = {STACK_TAG: args.stack, "inferstack:api-keys": "required"}
        alb = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", internal=not args.public,
            subnets=args.public_subnet_ids if args.public else args.private_subnet_ids,
            security_groups=[args.load_balancer_sg_id],
            # Streams and long completions hold a connection for minutes; 60 s (the default) cuts them.
            idle_timeout=s.load_balancer_idle_timeout_s, drop_invalid_header_fields=True, tags=tags, opts=child)
        target_group = aws.lb.TargetGroup(
            f"{name}-control-plane", port=CONTROL_PLANE_PORT, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            # A control-plane task being replaced finishes its streams first (up to 5 minutes).
            deregistration_delay=300,
            health_check=aws.lb.TargetGroupHealthCheckArgs(path="/health", matcher="200", interval=15,
                                                           healthy_threshold=2, unhealthy_threshold=3),
            tags=tags, opts=child)
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
        if s.certificate_arn:
            listener = aws.lb.Listener(f"{name}-https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                                       ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                                       certificate_arn=s.certificate_arn, default_actions=forward, opts=child)
            aws.lb.Listener(f"{name}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP", default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    port="443", protocol="HTTPS", status_code="HTTP_301"))], opts=child)
            scheme = "https"
        else:
            listener = aws.lb.Listener(f"{name}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                                       default_actions=forward, opts=child)
            scheme = "http"
        # With a certificate, the URL must be the certificate's name: https://<ALB DNS name> fails verification.
        waits_for: list[pulumi.Input[str]] = [listener.arn]
        if s.domain_name and s.hosted_zone_id:
            record = aws.route53.Record(f"{name}-dns", zone_id=s.hosted_zone_id, name=s.domain_name, type="A",
                                        aliases=[aws.route53.RecordAliasArgs(name=alb.dns_name, zone_id=alb.zone_id,
                                                                             evaluate_target_health=True)],
                                        allow_overwrite=False,
                                        opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
            waits_for.append(record.fqdn)
        host = pulumi.Output.from_input(s.domain_name) if s.domain_name else alb.dns_name
        self.url = pulumi.Output.all(host, *waits_for).apply(lambda a: f"{scheme}://{a[0]}")
        self.load_balancer_dns_name = alb.dns_name
        self.target_group_arn = target_group.arn
        self.listener_arn = listener.arn

        self.management_url = None
        if s.api_gateway:
            api = aws.apigatewayv2.Api(f"{name}-api", protocol_type="HTTP",
                                       description="inferstack management routes (never completions)",
                                       tags=tags, opts=child)
            # `{proxy}` would hold only what follows a route's prefix (/v1/deployments/abc -> /abc) and is
            # absent from routes without `{proxy+}`: forward the caller's whole path instead.
            integration = aws.apigatewayv2.Integration(
                f"{name}-alb", api_id=api.id, integration_type="HTTP_PROXY", integration_method="ANY",
                integration_uri=self.url, request_parameters=FORWARD_PATH,
                timeout_milliseconds=HTTP_API_TIMEOUT_MS, payload_format_version="1.0", opts=child)
            for index, route in enumerate(HTTP_API_ROUTES):
                aws.apigatewayv2.Route(f"{name}-route-{index}", api_id=api.id, route_key=route,
                                       target=integration.id.apply(lambda i: f"integrations/{i}"), opts=child)
            aws.apigatewayv2.Stage(f"{name}-default", api_id=api.id, name="$default", auto_deploy=True,
                                   default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                                       throttling_burst_limit=200, throttling_rate_limit=100), opts=child)
            self.management_url = api.api_endpoint
        self.register_outputs({"url": self.url, "management_url": self.management_url,
                               "load_balancer_dns_name": alb.dns_name})
