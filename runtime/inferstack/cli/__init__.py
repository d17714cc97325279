"""`inferstack ...`: the command line (Typer + Rich). `app` is the entry point `pyproject.toml` names."""

from inferstack.cli.app import app

__all__ = ["app"]
