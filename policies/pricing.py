"""What a stack launches, priced per hour: GPU instances as launched, and the platform around them.

Planning figures: on-demand list prices in us-east-1 (USD). A replica is priced by the machine it runs
on, not the GPUs it asks for: EC2 sells L4s in 1, 4 and 8, so a 2-GPU L4 replica runs (and bills) on
a 4-GPU g6.12xlarge. The platform (control-plane tasks, the database, the NAT gateway, the load
balancer) bills whether or not any replica runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferstack.hardware import PROFILES

FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
NAT_GATEWAY_HOUR = 0.045
"""Plus 0.045 per GB it carries (image pulls and weights downloads: see docs/aws.md)."""
PUBLIC_IPV4_HOUR = 0.005
LOAD_BALANCER_HOUR = 0.0225 + 0.008
"""An ALB's hour plus one load-balancer capacity unit (an idle one uses less than one)."""
RDS_POSTGRES_HOUR = {
    "db.t4g.micro": 0.016, "db.t4g.small": 0.032, "db.t4g.medium": 0.065, "db.t4g.large": 0.129,
    "db.m7g.large": 0.168, "db.m7g.xlarge": 0.337, "db.r7g.large": 0.239, "db.r7g.xlarge": 0.478,
}
"""Single-AZ; Multi-AZ doubles it (a standby instance)."""
RDS_GP3_GB_MONTH = 0.115
HOURS_PER_MONTH = 730.0

INSTANCE_GPUS: dict[str, tuple[str, int]] = {
    instance: (profile.name, gpus)
    for profile in PROFILES.values() for gpus, instance in profile.aws_instance_types.items()
}
"""EC2 instance type -> (hardware profile, the GPUs it has)."""

ASG_TYPE = "aws:autoscaling/group:Group"
DEPLOYMENT_TAG = "inferstack:deployment"


@dataclass(frozen=True)
class Priced:
    what: str
    usd_per_hour: float


class Unpriced(ValueError):
    """Something is launched that has no price here: the budget cannot be checked."""


def instance_hour(instance_type: str) -> float:
    """An instance's hour: its GPUs x the profile's price per GPU-hour (g6.12xlarge: 4 x 0.80 = 3.20)."""
    if instance_type not in INSTANCE_GPUS:
        raise Unpriced(f"instance type {instance_type!r} has no price")
    profile, gpus = INSTANCE_GPUS[instance_type]
    return PROFILES[profile].price_per_gpu_hour * gpus


def launched_instance_types(resources: Sequence[Any]) -> dict[str, str]:
    """Deployment name -> the EC2 instance type its Auto Scaling groups launch (AWS stacks only)."""
    found: dict[str, str] = {}
    for resource in resources:
        if resource.type != ASG_TYPE:
            continue
        tags = {t.get("key"): t.get("value") for t in resource.props.get("tags") or []}
        overrides = ((resource.props.get("mixedInstancesPolicy") or {}).get("launchTemplate") or {}).get("overrides")
        if tags.get(DEPLOYMENT_TAG) and overrides:
            found[tags[DEPLOYMENT_TAG]] = overrides[0]["instanceType"]
    return found


def platform_hourly(resources: Sequence[Any]) -> list[Priced]:
    """The resources that bill while idle, each priced; `Unpriced` for one this table does not know."""
    tasks = [r.props for r in resources if r.type == "aws:ecs/taskDefinition:TaskDefinition"
             and "FARGATE" in (r.props.get("requiresCompatibilities") or [])]
    task_hour = max((_fargate_hour(t) for t in tasks), default=0.0)
    priced: list[Priced] = []
    for resource in resources:
        props: Mapping[str, Any] = resource.props
        if resource.type == "aws:ecs/service:Service" and tasks:
            count = int(props.get("desiredCount") or 0)
            priced.append(Priced(f"{count} control-plane task(s)", count * task_hour))
        elif resource.type == "aws:rds/instance:Instance":
            priced.append(Priced(f"database {props.get('instanceClass')}", _database_hour(props)))
        elif resource.type == "aws:ec2/natGateway:NatGateway":
            priced.append(Priced("NAT gateway", NAT_GATEWAY_HOUR))
        elif resource.type == "aws:ec2/eip:Eip":
            priced.append(Priced("public IPv4 address", PUBLIC_IPV4_HOUR))
        elif resource.type == "aws:lb/loadBalancer:LoadBalancer":
            priced.append(Priced("load balancer", LOAD_BALANCER_HOUR))
    return priced


def _fargate_hour(task: Mapping[str, Any]) -> float:
    return int(task["cpu"]) / 1024 * FARGATE_VCPU_HOUR + int(task["memory"]) / 1024 * FARGATE_GB_HOUR


def _database_hour(props: Mapping[str, Any]) -> float:
    instance_class = props.get("instanceClass")
    if instance_class not in RDS_POSTGRES_HOUR:
        raise Unpriced(f"database instance class {instance_class!r} has no price")
    copies = 2 if props.get("multiAz") else 1
    storage = float(props.get("allocatedStorage") or 0) * RDS_GP3_GB_MONTH / HOURS_PER_MONTH
    return copies * (RDS_POSTGRES_HOUR[instance_class] + storage)
