"""The control plane's state on AWS: PostgreSQL (RDS) for its database, S3 for batch files, and the
secrets (platform API key, the key sealing stored tokens, Hugging Face token) in Secrets Manager.

The database password is generated and rotated by RDS (`manage_master_user_password`): no password
is in the stack, the state or the task definition; ECS injects it from RDS's own secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from inferstack.declared.stackfile import AwsSettings
from inferstack.providers.aws_groups import STACK_TAG

DATABASE_NAME = "inferstack"
DATABASE_USER = "inferstack"


def hf_token_secret_name(stack: str) -> str:
    """Fixed, so the launch templates' boot script can name it without an output in it."""
    return f"inferstack/{stack}/hf-token"


@dataclass(frozen=True)
class StateStoresArgs:
    stack: str
    settings: AwsSettings
    private_subnet_ids: pulumi.Input[list[str]]
    database_sg_id: pulumi.Input[str]
    api_key: pulumi.Input[str]
    token_key: pulumi.Input[str]
    hf_token: pulumi.Input[str] | None = None


class StateStores(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    database_address: pulumi.Output[str]
    database_password_secret_arn: pulumi.Output[str]
    api_key_secret_arn: pulumi.Output[str]
    token_key_secret_arn: pulumi.Output[str]
    hf_token_secret_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: StateStoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:aws:StateStores", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        tags = {STACK_TAG: args.stack}

        # --- batch files -----------------------------------------------------------------------------
        # With deletion_protection (prod), Pulumi refuses to delete what holds state: a `destroy` or a
        # replacement stops with an error until `protect` is lifted on purpose.
        stateful = pulumi.ResourceOptions(parent=self, protect=s.deletion_protection)
        bucket = aws.s3.Bucket(f"{name}-files", bucket_prefix=f"inferstack-{args.stack}-files-",
                               force_destroy=not s.deletion_protection, tags=tags, opts=stateful)
        aws.s3.BucketPublicAccessBlock(f"{name}-files", bucket=bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-files", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms"))],
            opts=child)

        # Only TLS: a request over plain HTTP is refused whoever makes it.
        aws.s3.BucketPolicy(f"{name}-files-tls-only", bucket=bucket.id, policy=bucket.arn.apply(
            lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})),
            opts=child)
        # Batch files expire (OpenAI's files carry expires_at); the store deletes what it knows about,
        # this ends what it does not (a half-written upload, a control plane that died mid-batch).
        aws.s3.BucketLifecycleConfiguration(f"{name}-files", bucket=bucket.id, rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-batch-files", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="files/"),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=s.files_retention_days),
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=1))],
            opts=child)

        # --- the database ----------------------------------------------------------------------------
        subnets = aws.rds.SubnetGroup(f"{name}-db", subnet_ids=args.private_subnet_ids, tags=tags, opts=child)
        database = aws.rds.Instance(
            f"{name}-db", engine="postgres", engine_version="16", instance_class=s.db_instance_class,
            allocated_storage=s.db_allocated_storage_gb, max_allocated_storage=s.db_allocated_storage_gb * 5,
            storage_type="gp3", storage_encrypted=True, db_name=DATABASE_NAME, username=DATABASE_USER,
            manage_master_user_password=True, db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[args.database_sg_id], publicly_accessible=False, multi_az=s.db_multi_az,
            backup_retention_period=7, deletion_protection=s.deletion_protection,
            skip_final_snapshot=not s.deletion_protection,
            final_snapshot_identifier=f"inferstack-{args.stack}-final" if s.deletion_protection else None,
            tags=tags, opts=stateful)

        # --- secrets ---------------------------------------------------------------------------------
        api_key = aws.secretsmanager.Secret(f"{name}-api-key", name_prefix=f"inferstack/{args.stack}/api-key-",
                                            recovery_window_in_days=7, tags=tags, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-api-key", secret_id=api_key.id,
                                         secret_string=pulumi.Output.secret(args.api_key), opts=child)
        # INFERSTACK_TOKEN_KEY: every task seals and opens stored tokens with it (a task's home is gone at restart).
        token_key = aws.secretsmanager.Secret(f"{name}-token-key", name_prefix=f"inferstack/{args.stack}/token-key-",
                                              recovery_window_in_days=7, tags=tags, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-token-key", secret_id=token_key.id,
                                         secret_string=pulumi.Output.secret(args.token_key), opts=child)
        self.hf_token_secret_arn = None
        if args.hf_token is not None:
            # A fixed name (the boot script names it): a replacement must delete the old one first.
            token = aws.secretsmanager.Secret(f"{name}-hf-token", name=hf_token_secret_name(args.stack),
                                              recovery_window_in_days=0, tags=tags,
                                              opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
            aws.secretsmanager.SecretVersion(f"{name}-hf-token", secret_id=token.id,
                                             secret_string=pulumi.Output.secret(args.hf_token), opts=child)
            self.hf_token_secret_arn = token.arn

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.database_address = database.address
        self.database_password_secret_arn = database.master_user_secrets.apply(lambda ss: ss[0].secret_arn)
        self.api_key_secret_arn = api_key.arn
        self.token_key_secret_arn = token_key.arn
        self.register_outputs({"bucket": self.bucket_name, "database_address": self.database_address})
