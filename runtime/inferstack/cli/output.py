"""What every `inferstack` command shares: the client, output formats and error reporting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, NoReturn

import click
import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Column, Table
from typer.core import TyperCommand

from inferstack.client import ControlPlaneClient, ControlPlaneError
from inferstack.settings import ClientSettings, Env

out = Console()
err = Console(stderr=True)

# Long reads: an upload's response comes only once the whole file is stored.
CLI_TIMEOUT = httpx.Timeout(60, read=600)


class PlainUsage(TyperCommand):
    """Usage lines name arguments as `inferstack create [OPTIONS] MODEL`: typer writes a required one as
    `{model}`, which reads like a template to fill in rather than the convention every CLI follows."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [p[1:-1].upper() if p.startswith("{") and p.endswith("}") else p
                for p in super().collect_usage_pieces(ctx)]


class App(typer.Typer):
    """`typer.Typer` whose commands use `PlainUsage`."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", PlainUsage)
        return super().command(*args, **kwargs)


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
        if exc.status == 401 and not ClientSettings.from_env().api_key:
            fail(f"no API key: set {Env.API_KEY} (`inferstack keys create --tenant NAME` on the control plane's "
                 "host prints one)")
        fail(f"{exc.describe()} (HTTP {exc.status})" if exc.status else exc.describe())


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None, not an empty repeatable one): the spec supplies the rest."""
    return {name: value for name, value in options.items()
            if value is not None and not (isinstance(value, list | tuple) and not value)}


def id_column(header: str) -> Column:
    """A column of ids (or model ids): every other command takes them, so they are never cut or wrapped."""
    return Column(header, no_wrap=True)


def print_table(table: Table) -> None:
    """Print `table` no narrower than its unwrappable columns need: at 80 columns rich would cut an id to
    `dep-2…`. In a pipe nothing wraps at all, so each row stays one line for grep and awk."""
    measured = Measurement.get(out, out.options.update_width(1_000_000), table)
    needed = measured.minimum if out.is_terminal else measured.maximum
    if needed <= out.width:
        out.print(table)
    else:  # `print(width=...)` cannot go past the console's width: a console as wide as the table can
        Console(file=out.file, width=needed, force_terminal=out.is_terminal, no_color=out.no_color).print(table)


def emit(data: Any, output: Output, table: Table | None = None) -> None:
    """Print `table`, or `data` as JSON with `-o json` (or when there is no table form)."""
    if output is Output.json or table is None:
        out.print_json(json.dumps(data))
    else:
        print_table(table)
