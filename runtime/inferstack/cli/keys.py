"""`inferstack keys create|list|revoke|rotate`: API keys.

`create --tenant` writes to the control plane's store directly (it makes the first key of a tenant, so it
needs no key); `create` without it and the other commands go through the REST API with an admin key
(INFERSTACK_API_KEY). A new key is printed alone on stdout's last line: it is shown once and stored hashed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Column, Table

from inferstack.access import KeyLimits, KeyScope, parse_duration
from inferstack.cli.output import App, Output, OutputOption, control_plane, emit, err, fail, given, out

keys_app = App(help="API keys: create (on the store, for a tenant), list, revoke, rotate.",
                       no_args_is_help=True)


def _seconds(expires_in: str | None) -> float | None:
    if expires_in is None:
        return None
    try:
        return parse_duration(expires_in)
    except ValueError as exc:
        fail(f"--expires-in: {exc}")


def _limits(rpm: int | None, tpm: int | None, concurrency: int | None) -> KeyLimits:
    try:
        return KeyLimits(requests_per_minute=rpm, tokens_per_minute=tpm, max_concurrent_requests=concurrency)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


@keys_app.command("create")
def create(
    tenant: str | None = typer.Option(None, "--tenant", help="Make the key on this host's store for this tenant "
                                      "(created if new): no key needed. Without it: over REST, with an admin key."),
    scope: KeyScope | None = typer.Option(None, "--scope", help="admin, or inference (calls models only). "
                                          "Default: admin with --tenant, inference over REST."),
    expires_in: str | None = typer.Option(None, "--expires-in", help="Lifetime, e.g. 3600s, 90m, 12h, 30d."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute (default: unlimited)."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute (default: unlimited)."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Requests in flight at once."),
    output: Output = OutputOption,
) -> None:
    """Create an API key; the key is printed alone on the last line (shown once, stored hashed)."""
    lifetime = _seconds(expires_in)
    limits = _limits(rpm, tpm, concurrency)
    if tenant is None:
        body = given(scope=scope, expires_in_s=lifetime, limits=limits.model_dump(exclude_none=True))
        with control_plane() as client:
            made = client.create_key(body)
        if output is Output.json:
            emit(made, output)
            return
        err.print(f"Created {made['scope']} key {made['id']}. Keep it: it is not shown again.")
        print(made["key"])
        return
    from inferstack.server import open_store
    from inferstack.settings import Settings

    scope = scope or KeyScope.admin
    now = time.time()
    store = open_store(Settings.from_env())
    tenant_id, key = store.create_key(tenant, now, scope=scope, expires_at=now + lifetime if lifetime else None,
                                      limits=limits)
    err.print(f"Created a {scope} key for tenant {tenant} ({tenant_id}). Keep it: it is not shown again.")
    print(key)


@keys_app.command("list")
def list_keys(output: Output = OutputOption) -> None:
    """The tenant's keys (never the keys themselves): scope, status, expiry and limits."""
    with control_plane() as client:
        keys = client.list_keys()
    emit(keys, output, _table(keys))


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (key-...), from `inferstack keys list`."),
           output: Output = OutputOption) -> None:
    """Revoke a key: it is refused from now on."""
    with control_plane() as client:
        key = client.revoke_key(key_id)
    if output is Output.json:
        emit(key, output)
    else:
        out.print(f"Revoked {key['id']} ({key['prefix']}..., {key['scope']}): it is refused from now on.")


@keys_app.command("rotate")
def rotate(key_id: str = typer.Argument(..., help="The key's id (key-...)."),
           expires_in: str | None = typer.Option(None, "--expires-in",
                                                 help="The new key's lifetime (default: the old key's)."),
           output: Output = OutputOption) -> None:
    """Replace a key by a new one with the same scope and limits; the old one is revoked at once."""
    body = given(expires_in_s=_seconds(expires_in))
    with control_plane() as client:
        key = client.rotate_key(key_id, body)
    if output is Output.json:
        emit(key, output)
        return
    err.print(f"Rotated {key_id}: it is revoked. The new key {key['id']} is not shown again.")
    print(key["key"])


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M") if timestamp else "never"


def _limits_text(limits: dict[str, Any]) -> str:
    names = {"requests_per_minute": "rpm", "tokens_per_minute": "tpm", "max_concurrent_requests": "concurrent"}
    return ", ".join(f"{value} {names[name]}" for name, value in limits.items() if value) or "unlimited"


def _table(keys: list[dict[str, Any]]) -> Table:
    # Ids are copied from this table: they never wrap.
    table = Table(Column("ID", no_wrap=True), Column("PREFIX", no_wrap=True), "SCOPE", "STATUS",
                  Column("EXPIRES (UTC)", no_wrap=True), "LIMITS")
    for k in keys:
        table.add_row(k["id"], k["prefix"], k["scope"], k["status"], _when(k["expires_at"]), _limits_text(k["limits"]))
    return table
