"""`inferstack adapters list|add|remove`: the LoRA adapters of a base deployment.

Adding or removing one loads or unloads it on the running replicas; callers use `<deployment>:<adapter>`
as `model` (`inferstack.lora`).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Column, Table

from inferstack.cli.output import Output, OutputOption, control_plane, emit, given, out

adapters_app = typer.Typer(help="LoRA adapters of a base deployment: list, add, remove.", no_args_is_help=True)


def adapter_table(adapters: list[dict[str, Any]]) -> Table:
    # The model name is what a user copies into a client: never wrapped.
    table = Table(Column("MODEL", no_wrap=True), "SOURCE", "LOADED ON", "REQUESTS (FAILED)", "TOKENS IN/OUT",
                  "MEAN LATENCY", "PROBLEM")
    for a in adapters:
        latency = f"{a['mean_latency_s'] * 1000:.0f} ms" if a["mean_latency_s"] is not None else "-"
        table.add_row(a["model"], a["source"], str(a["loaded_replicas"]), f"{a['requests']} ({a['failed_requests']})",
                      f"{a['prompt_tokens']}/{a['completion_tokens']}", latency, "; ".join(a["failures"]))
    return table


@adapters_app.command("list")
def list_(deployment: str = typer.Argument(..., help="Deployment id or name."), output: Output = OutputOption) -> None:
    """A deployment's adapters: the model name to call, where each is loaded, its traffic."""
    with control_plane() as client:
        data = client.list_adapters(deployment)
    emit(data, output, adapter_table(data))


@adapters_app.command()
def add(deployment: str = typer.Argument(..., help="Deployment id or name."),
        name: str = typer.Argument(..., help="Adapter name: call it as <deployment-name>:<name>."),
        source: str = typer.Argument(..., help="Hugging Face repo id or an absolute path the replicas can read."),
        rank: int | None = typer.Option(None, "--rank", help="The adapter's LoRA rank r, when known."),
        output: Output = OutputOption) -> None:
    """Add an adapter and load it on every ready replica, without a restart."""
    with control_plane() as client:
        info = client.add_adapter(deployment, given(name=name, source=source, rank=rank))
    emit(info, output, adapter_table([info]))


@adapters_app.command()
def remove(deployment: str = typer.Argument(..., help="Deployment id or name."),
           name: str = typer.Argument(..., help="Adapter name."), output: Output = OutputOption) -> None:
    """Unload an adapter from every replica and take it out of the deployment."""
    with control_plane() as client:
        info = client.remove_adapter(deployment, name)
    if output is Output.json:
        emit(info, output)
    else:
        out.print(f"removed {info['model']}")
