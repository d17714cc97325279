"""What every `inferstack` command shares: the client, output formats and error reporting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inferstack.client import ControlPlaneClient, ControlPlaneError

out = Console()
err = Console(stderr=True)

# Long reads: an upload's response comes only once the whole file is stored.
CLI_TIMEOUT = httpx.Timeout(60, read=600)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "-o", "--output", help="table or json")


def fail(message: str) -> NoReturn:
    # Plain text, not markup: "pip install 'inferstack[plot]'" lost its "[plot]" to Rich.
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


@contextmanager
def control_plane() -> Iterator[ControlPlaneClient]:
    """The client (INFERSTACK_URL, INFERSTACK_API_KEY); a refusal becomes one clear line and exit code 1."""
    try:
        with ControlPlaneClient(timeout=CLI_TIMEOUT) as client:
            yield client
    except ControlPlaneError as exc:
        fail(f"{exc.describe()} (HTTP {exc.status})" if exc.status else exc.describe())


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None, not an empty repeatable one): the spec supplies the rest."""
    return {name: value for name, value in options.items()
            if value is not None and not (isinstance(value, list | tuple) and not value)}


def emit(data: Any, output: Output, table: Table | None = None) -> None:
    """Print `table`, or `data` as JSON with `-o json` (or when there is no table form)."""
    if output is Output.json or table is None:
        out.print_json(json.dumps(data))
    else:
        out.print(table)
