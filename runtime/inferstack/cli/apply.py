"""`inferstack apply stacks/Pulumi.<stack>.yaml`: converge a stack file's deployments, no Pulumi needed.

The plan is printed first; nothing changes without `--yes`. Mounted by the CLI as
`app.command("apply")(inferstack.cli.apply.apply)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from inferstack.client import ControlPlaneClient, ControlPlaneError
from inferstack.declared.apply import Outcome
from inferstack.declared.apply import apply as apply_plan
from inferstack.declared.plan import Action, Plan
from inferstack.declared.plan import plan as make_plan
from inferstack.declared.stackfile import StackConfig, StackFileError, load_stack_file
from inferstack.settings import Env
from inferstack.spec import DeploymentSpec

_STYLE = {Action.create: "green", Action.update: "yellow", Action.replace: "magenta", Action.delete: "red"}
_SIGN = {Action.create: "+", Action.update: "~", Action.replace: "+-", Action.delete: "-"}


def apply(
    stack_file: Annotated[Path, typer.Argument(help="A stack file, e.g. stacks/Pulumi.local.yaml.",
                                               exists=True, dir_okay=False, readable=True)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply the plan (else only show it).")] = False,
    url: Annotated[str | None, typer.Option(
        "--url", help="Control plane base URL. [default: INFERSTACK_URL or http://127.0.0.1:8000]")] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="API key of the tenant that owns the stack. [default: INFERSTACK_API_KEY]")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    prune: Annotated[bool, typer.Option("--prune/--no-prune",
                                        help="Delete live deployments the file does not declare.")] = True,
    hf_token: Annotated[str | None, typer.Option("--hf-token", envvar=Env.HF_TOKEN,
                                                 help="Hugging Face token for the deployments.")] = None,
) -> None:
    """Show what it takes to make the control plane match a stack file's deployments; apply it with --yes."""
    console = Console()
    if output not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--output")
    try:
        stack = load_stack_file(stack_file)
    except StackFileError as exc:
        _fail(console, output, "invalid stack file", exc.errors, code=2)
    desired = _with_token(stack, hf_token)
    with ControlPlaneClient(url, api_key) as client:
        try:
            the_plan = make_plan(desired, client.list_deployments(), prune=prune)
        except ControlPlaneError as exc:
            _fail(console, output, exc.message, exc.details, code=1)
        outcomes = apply_plan(the_plan, client) if yes and not the_plan.empty else None

    if output == "json":
        applied = None if outcomes is None else [o.to_dict() for o in outcomes]
        print(json.dumps({"stack": stack.stack, "url": client.base_url, "plan": the_plan.to_dict(),
                          "applied": applied}, indent=2))
    else:
        _print_plan(console, stack, the_plan)
        if outcomes is not None:
            _print_outcomes(console, outcomes)
        elif not the_plan.empty:
            console.print("[dim]Nothing changed. Run again with --yes to apply.[/dim]")
        if stack.secret_keys_present & {"hfToken"} and hf_token is None:
            console.print("[yellow]The stack declares inferstack:hfToken; pass --hf-token or "
                          f"{Env.HF_TOKEN} to send it.[/yellow]")
    if outcomes is not None and not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def _with_token(stack: StackConfig, hf_token: str | None) -> list[DeploymentSpec]:
    if hf_token is None:
        return list(stack.deployments)
    return [spec.model_copy(update={"hf_token": SecretStr(hf_token)}) for spec in stack.deployments]


def _print_plan(console: Console, stack: StackConfig, the_plan: Plan) -> None:
    console.print(f"Stack [bold]{stack.stack}[/bold] ({stack.target}): {the_plan.summary()}")
    if the_plan.empty:
        console.print("[green]The control plane matches the stack file.[/green]")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("", "deployment", "changes"):
        table.add_column(column)
    for change in the_plan.changes:
        if change.action is Action.create:
            spec = change.spec
            assert spec is not None
            detail = (f"{spec.hf_model_id} on {spec.hardware_profile}, "
                      f"{spec.min_replicas}..{spec.max_replicas} replicas")
        elif change.action is Action.delete:
            detail = change.deployment_id or ""
        else:
            detail = "\n".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in change.fields.items())
        style = _STYLE[change.action]
        sign = _SIGN[change.action]
        table.add_row(f"[{style}]{sign}[/{style}]", f"[{style}]{change.name}[/{style}]", detail)
    console.print(table)


def _print_outcomes(console: Console, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        mark = "[green]ok[/green]" if outcome.ok else "[red]failed[/red]"
        console.print(f"{mark} {outcome.change.action.value} {outcome.change.name}: {outcome.message}")


def _fail(console: Console, output: str, message: str, details: list[dict[str, str]], *, code: int) -> None:
    if output == "json":
        print(json.dumps({"error": {"message": message, "details": details}}, indent=2))
    else:
        console.print(f"[red]{message}[/red]")
        for item in details:
            console.print(f"  [bold]{item.get('field')}[/bold]: {item.get('message')}")
    raise typer.Exit(code)
