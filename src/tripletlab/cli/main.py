"""The `tripletlab` command: sub-commands are assembled here."""

from __future__ import annotations

import logging

import typer

from tripletlab.cli import data, export
from tripletlab.cli.inspect import benchmark, embed, evaluate, report, summary
from tripletlab.cli.train import train

app = typer.Typer(
    name="tripletlab",
    help="Learn image similarity with triplet losses: train, evaluate, embed, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(train)
app.command()(evaluate)
app.command()(embed)
app.command()(report)
app.command()(benchmark)
app.command()(summary)
app.add_typer(data.app, name="data")
app.add_typer(export.app, name="export")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()
