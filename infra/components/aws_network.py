"""The AWS network: a VPC with public and private subnets (or an existing one), and the security
groups that make the only paths load balancer -> control plane -> replicas / database."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from inferstack.declared.stackfile import AwsSettings
from inferstack.engines.container import REPLICA_PORT
from inferstack.providers.aws_groups import STACK_TAG

CONTROL_PLANE_PORT = 8000


@dataclass(frozen=True)
class NetworkArgs:
    stack: str
    settings: AwsSettings
    public: bool
    """Internet-facing load balancer (else reachable from inside the VPC only)."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    load_balancer_sg_id: pulumi.Output[str]
    control_plane_sg_id: pulumi.Output[str]
    replica_sg_id: pulumi.Output[str]
    database_sg_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:Network", name, None, opts)
        s = args.settings
        tags = {STACK_TAG: args.stack}
        if s.vpc_id:
            # Bring-your-own network: nothing to create but the security groups.
            self.vpc_id = pulumi.Output.from_input(s.vpc_id)
            self.public_subnet_ids = pulumi.Output.from_input(list(s.public_subnet_ids))
            self.private_subnet_ids = pulumi.Output.from_input(list(s.private_subnet_ids))
        else:
            self._create_vpc(name, s, tags)
        self._security_groups(name, s, tags)
        self.register_outputs({
            "vpc_id": self.vpc_id, "public_subnet_ids": self.public_subnet_ids,
            "private_subnet_ids": self.private_subnet_ids,
        })

    def _create_vpc(self, name: str, s: AwsSettings, tags: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=s.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags={**tags, "Name": f"{name}-vpc"}, opts=child)
        zones = aws.get_availability_zones_output(state="available").names
        # 10.42.0.0/16 -> /20 blocks: public 10.42.0.0/20, 10.42.16.0/20; private 10.42.128.0/20, ...
        blocks = list(ipaddress.ip_network(s.vpc_cidr).subnets(new_prefix=20))
        half = len(blocks) // 2
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_routes = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, routes=[
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)], tags=tags, opts=child)
        public, private = [], []
        for index in range(s.availability_zones):
            zone = zones.apply(lambda names, i=index: names[i % len(names)])
            subnet = aws.ec2.Subnet(f"{name}-public-{index}", vpc_id=vpc.id, cidr_block=str(blocks[index]),
                                    availability_zone=zone, map_public_ip_on_launch=False,
                                    tags={**tags, "Name": f"{name}-public-{index}", "inferstack:tier": "public"},
                                    opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{index}", subnet_id=subnet.id,
                                          route_table_id=public_routes.id, opts=child)
            public.append(subnet)
            private.append(aws.ec2.Subnet(f"{name}-private-{index}", vpc_id=vpc.id,
                                          cidr_block=str(blocks[half + index]), availability_zone=zone,
                                          tags={**tags, "Name": f"{name}-private-{index}",
                                                "inferstack:tier": "private"}, opts=child))
        # One NAT gateway: replicas pull images and weights through it (per-AZ NATs cost more than
        # the outage of one AZ's egress is worth for a model cache that is mostly warm).
        nat_ip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags, opts=child)
        nat = aws.ec2.NatGateway(f"{name}-nat", subnet_id=public[0].id, allocation_id=nat_ip.id, tags=tags,
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]))
        private_routes = aws.ec2.RouteTable(f"{name}-private", vpc_id=vpc.id, routes=[
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)], tags=tags, opts=child)
        for index, subnet in enumerate(private):
            aws.ec2.RouteTableAssociation(f"{name}-private-{index}", subnet_id=subnet.id,
                                          route_table_id=private_routes.id, opts=child)
        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])

    def _security_groups(self, name: str, s: AwsSettings, tags: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        egress = [aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])]
        lb_ports = [443, 80] if s.certificate_arn else [80]
        lb = aws.ec2.SecurityGroup(f"{name}-lb", vpc_id=self.vpc_id, description="inferstack load balancer",
                                   ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=port,
                                                                             to_port=port, cidr_blocks=s.allowed_cidrs)
                                            for port in lb_ports],
                                   egress=egress, tags=tags, opts=child)
        control_plane = aws.ec2.SecurityGroup(
            f"{name}-control-plane", vpc_id=self.vpc_id, description="inferstack control plane",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=CONTROL_PLANE_PORT,
                                                      to_port=CONTROL_PLANE_PORT, security_groups=[lb.id])],
            egress=egress, tags=tags, opts=child)
        # Replicas answer the control plane only: the gateway is the one way in.
        replicas = aws.ec2.SecurityGroup(
            f"{name}-replicas", vpc_id=self.vpc_id, description="inferstack GPU replicas",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=REPLICA_PORT, to_port=REPLICA_PORT,
                                                      security_groups=[control_plane.id])],
            egress=egress, tags=tags, opts=child)
        database = aws.ec2.SecurityGroup(
            f"{name}-database", vpc_id=self.vpc_id, description="inferstack state database",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=5432, to_port=5432,
                                                      security_groups=[control_plane.id])],
            egress=egress, tags=tags, opts=child)
        self.load_balancer_sg_id = lb.id
        self.control_plane_sg_id = control_plane.id
        self.replica_sg_id = replicas.id
        self.database_sg_id = database.id
