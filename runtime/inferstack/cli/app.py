"""The `inferstack` command: its sub-commands talk to the control plane's REST API (INFERSTACK_URL with
the key in INFERSTACK_API_KEY); `serve` runs the control plane and `keys create --tenant` writes to its store."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from inferstack.cli import deployments, simulate
from inferstack.cli.adapters import adapters_app
from inferstack.cli.apply import apply
from inferstack.cli.files import batch_app, files_app
from inferstack.cli.keys import keys_app
from inferstack.cli.output import App, fail
from inferstack.lora import S3_SCHEME, AdapterSpec

app = App(help="Dedicated, autoscaled, OpenAI-compatible LLM inference deployments.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


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


@app.command()
def demo(engine: str = typer.Option("sim", "--engine", help="sim (built-in simulator) or vllm (real vLLM)."),
         keep: bool = typer.Option(False, "--keep", help="Leave the control plane running afterwards.")) -> None:
    """Run the local demo: a control plane, a deployment, and chat through the official openai client."""
    from inferstack.cli.demo import run_demo

    run_demo(engine, keep)


@app.command("fetch-adapters")
def fetch_adapters(adapters: list[str] = typer.Argument(..., metavar="NAME=s3://BUCKET/PREFIX...",
                                                         help="Each adapter's name and where it is in S3."),
                   into: Path = typer.Option(..., "--into", help="Each goes into INTO/NAME.")) -> None:
    """Fetch LoRA adapters from S3 before an engine starts: what a cloud replica runs at launch (AWS settings
    and credentials from the environment, as boto3 finds them: instance role, pod identity)."""
    from inferstack import s3
    from inferstack.lora_fetch import AdapterUnavailable, fetch_into
    from inferstack.settings import S3Settings

    client = s3.client(S3Settings.from_env())
    for pair in adapters:
        name, _, source = pair.partition("=")
        try:
            adapter: AdapterSpec | None = AdapterSpec(name=name, source=source)
        except ValidationError:
            adapter = None
        if adapter is None or not adapter.source.startswith(S3_SCHEME):
            fail(f"{pair!r} is not NAME=s3://bucket/prefix")
        try:
            fetch_into(client, adapter.source, into / adapter.name)
        except AdapterUnavailable as exc:
            fail(f"adapter {adapter.name}: {exc}")
        typer.echo(f"fetched {adapter.name} from {adapter.source}")


app.add_typer(keys_app, name="keys")
app.add_typer(adapters_app, name="adapters")
app.add_typer(deployments.app)
app.add_typer(files_app, name="files")
app.add_typer(batch_app, name="batch")
app.command("apply")(apply)
app.add_typer(simulate.app)
