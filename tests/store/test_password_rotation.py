"""RDS rotates the database password every 7 days; the control plane must keep working through it.

A PostgreSQL server of the test's own, with password authentication (the shared test server trusts
every local connection, so it cannot refuse a stale password), and the password in a Secrets Manager
secret on the moto server, as RDS keeps it. The store is opened the way `inferstack serve` opens it
(`server.open_store` from `Settings`), with PGPASSWORD set from the secret at start-up, as ECS did.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from inferstack.server import open_store
from inferstack.settings import Settings
from support import free_port, wait_for

BIN = Path("/usr/lib/postgresql/15/bin")
ADMIN_PASSWORD = "admin-password-for-the-test-server"


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """A PostgreSQL with scram-sha-256 on 127.0.0.1; yields its admin URL."""
    if not (BIN / "initdb").exists() or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15's initdb and root (to run it as the postgres user)")
    # Not under pytest's own temporary directory: the postgres user must be able to reach it.
    home = Path(tempfile.mkdtemp(prefix="inferstack-pg-"))
    home.chmod(0o777)
    (home / "pw").write_text(ADMIN_PASSWORD)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, BIN / "initdb", "-D", home / "data", "--auth=scram-sha-256", "-U", "postgres",
                    f"--pwfile={home / 'pw'}", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen([*as_postgres, BIN / "postgres", "-D", home / "data", "-p", str(port), "-k", home,
                               "-c", "listen_addresses=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://postgres:{ADMIN_PASSWORD}@127.0.0.1:{port}/postgres"

    def up() -> bool:
        try:
            psycopg.connect(url, connect_timeout=1).close()
            return True
        except psycopg.OperationalError:
            return False

    try:
        wait_for(up, timeout=30, what="the password-checking PostgreSQL")
        yield url
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def test_the_store_keeps_working_after_the_password_is_rotated(password_postgres: str, moto_reset: str,
                                                               tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    admin(password_postgres, "drop database if exists inferstack")
    admin(password_postgres, "drop role if exists inferstack")
    admin(password_postgres, "create role inferstack login password 'first-password'")
    admin(password_postgres, "create database inferstack owner inferstack")
    secrets = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_reset)
    arn = secrets.create_secret(Name="rds!db-test", SecretString=json.dumps(
        {"username": "inferstack", "password": "first-password"}))["ARN"]
    port = password_postgres.rsplit(":", 1)[1].split("/")[0]
    monkeypatch.setenv("PGPASSWORD", "first-password")  # what ECS injected when the task started
    settings = Settings.from_env({
        "INFERSTACK_HOME": str(tmp_path), "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_reset,
        "INFERSTACK_DATABASE_URL": f"postgresql+psycopg://inferstack@127.0.0.1:{port}/inferstack",
        "INFERSTACK_DATABASE_PASSWORD_SECRET": arn})
    store = open_store(settings)
    tenant, _key = store.create_key("before", time.time())

    # RDS rotates: a new password on the role and in the secret; the connections it had are gone
    # (a failover, a recycled pool, a second task starting): new ones must use the new password.
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(
        {"username": "inferstack", "password": "second-password"}))
    admin(password_postgres, "alter role inferstack password 'second-password'")
    admin(password_postgres, "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'inferstack'")

    assert store.create_key("after", time.time())[0] != tenant, "the store wrote after the rotation"
    store.engine.dispose()
