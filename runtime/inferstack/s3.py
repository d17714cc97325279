"""S3 as every part of the control plane reaches it (the file store, LoRA adapters): one reading of an
`s3://bucket/prefix` location and one way to make the client, its endpoint and region from `S3Settings`,
its credentials from boto3's usual chain."""

from __future__ import annotations

from typing import Any

from inferstack.settings import S3Settings

SCHEME = "s3://"


def location(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); a ValueError for anything else."""
    bucket, _, prefix = url.removeprefix(SCHEME).partition("/")
    if not url.startswith(SCHEME) or not bucket:
        raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
    return bucket, prefix.strip("/")


def client(settings: S3Settings) -> Any:
    import boto3  # imported here: the local default (no S3 anywhere) never pays for it

    # Its own session: credentials are looked up now, not those boto3's default session found earlier.
    return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
