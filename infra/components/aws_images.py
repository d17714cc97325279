"""Where replicas pull their image from on AWS: Docker Hub images through an ECR pull-through cache.

Anonymous pulls of `vllm/vllm-openai` (10+ GB) from every replica, all through the one NAT address,
meet Docker Hub's rate limit as soon as a few replicas start together. A pull-through cache rule makes
ECR fetch each image once, with the stack's Docker Hub credentials, and serve it inside the region;
the boot script logs in to ECR with the instance role.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from inferstack.declared.stackfile import docker_hub_path


def cache_prefix(stack: str) -> str:
    """The ECR repository prefix of the stack's Docker Hub cache (the replica role may pull under it)."""
    return f"{stack}-docker-hub"


def replica_image(name: str, stack: str, image: str, credentials_arn: str | None,
                  parent: pulumi.Resource) -> pulumi.Output[str]:
    """`image`, or its name in the stack's pull-through cache when it is on Docker Hub, e.g.
    vllm/vllm-openai:v0.11.0 ->
    123456789012.dkr.ecr.us-east-1.amazonaws.com/prod-docker-hub/vllm/vllm-openai:v0.11.0."""
    path = docker_hub_path(image)
    if path is None or credentials_arn is None:  # stack validation requires credentials for Docker Hub images
        return pulumi.Output.from_input(image)
    rule = aws.ecr.PullThroughCacheRule(name, ecr_repository_prefix=cache_prefix(stack),
                                        upstream_registry_url="registry-1.docker.io", credential_arn=credentials_arn,
                                        opts=pulumi.ResourceOptions(parent=parent))
    return pulumi.Output.all(rule.registry_id, aws.get_region_output(opts=pulumi.InvokeOptions(parent=parent)).region,
                             rule.ecr_repository_prefix).apply(
        lambda a: f"{a[0]}.dkr.ecr.{a[1]}.amazonaws.com/{a[2]}/{path}")
