"""The `inferstack` command: its sub-commands talk to the control plane's REST API (INFERSTACK_URL with
the key in INFERSTACK_API_KEY); `serve` runs the control plane and `keys create` writes to its store."""

from __future__ import annotations

import time

import typer

from inferstack.cli import deployments
from inferstack.cli.apply import apply
from inferstack.cli.files import batch_app, files_app
from inferstack.cli.output import err, fail

app = typer.Typer(help="Dedicated, autoscaled, OpenAI-compatible LLM inference deployments.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="API keys (admin: writes to the control plane's store directly).")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port to listen on."),
          workers: int = typer.Option(1, min=1, help="Processes sharing the port; all serve, one leads.")) -> None:
    """Run the control plane: REST API, OpenAI-compatible gateway, controller and batch runner."""
    from inferstack.server import serve as run

    try:
        run(host, port, workers=workers)
    except ValueError as exc:  # a bad INFERSTACK_* setting: say which, without a traceback
        fail(f"cannot start the control plane: {exc}")


@keys_app.command("create")
def keys_create(tenant: str = typer.Option(..., "--tenant", help="Tenant of the key (created if new).")) -> None:
    """Create an API key; the key is printed alone on the last line (shown once, stored hashed)."""
    from inferstack.server import open_store
    from inferstack.settings import Settings

    store = open_store(Settings.from_env())
    tenant_id, key = store.create_key(tenant, time.time())
    err.print(f"Created a key for tenant {tenant} ({tenant_id}). Keep it: it is not shown again.")
    print(key)


@app.command()
def demo(engine: str = typer.Option("sim", "--engine", help="sim (built-in simulator) or vllm (real vLLM)."),
         keep: bool = typer.Option(False, "--keep", help="Leave the control plane running afterwards.")) -> None:
    """Run the local demo: a control plane, a deployment, and chat through the official openai client."""
    from inferstack.cli.demo import run_demo

    run_demo(engine, keep)


app.add_typer(keys_app, name="keys")
app.add_typer(deployments.app)
app.add_typer(files_app, name="files")
app.add_typer(batch_app, name="batch")
app.command("apply")(apply)
