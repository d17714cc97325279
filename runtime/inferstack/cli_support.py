"""What every `inferstack` command shares: the REST client, output formats and error reporting."""

from __future__ import annotations

import json
from enum import StrEnum
from types import TracebackType
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from inferstack.settings import ClientSettings

out = Console()
err = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "-o", "--output", help="table or json")


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


class Api:
    """The REST API, with error bodies turned into one clear line and exit code 1."""

    def __init__(self) -> None:
        client = ClientSettings.from_env()
        self.url, key = client.url, client.api_key
        # Long reads: an upload's response comes only once the whole file is stored.
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(60, read=600),
                                 headers={"Authorization": f"Bearer {key}"} if key else {})

    def __enter__(self) -> Api:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the control plane at {self.url}: {exc}")
        self.check(response)
        return response.json()

    @staticmethod
    def check(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            error = response.json().get("error") or {}
            message = error.get("message") or response.text
        except (ValueError, AttributeError):
            message = response.text[:300]
        fail(f"{message} (HTTP {response.status_code})")


def emit(data: Any, output: Output, table: Table | None = None) -> None:
    """Print `table`, or `data` as JSON with `-o json` (or when there is no table form)."""
    if output is Output.json or table is None:
        out.print_json(json.dumps(data))
    else:
        out.print(table)
