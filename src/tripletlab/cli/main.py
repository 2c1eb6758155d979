"""The `tripletlab` command: one module per command (group), assembled here."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Annotated

import typer

from tripletlab import __version__
from tripletlab.cli import data, export, index
from tripletlab.cli.benchmark import benchmark
from tripletlab.cli.common import user_errors
from tripletlab.cli.embed import embed
from tripletlab.cli.evaluate import evaluate
from tripletlab.cli.predict import predict
from tripletlab.cli.report import report
from tripletlab.cli.search import match, search
from tripletlab.cli.serve import serve
from tripletlab.cli.summary import summary
from tripletlab.cli.train import train
from tripletlab.models import import_backbone_modules

app = typer.Typer(
    name="tripletlab",
    help="Learn image similarity with triplet losses: train, evaluate, embed, search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tripletlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            help="Import this module first (repeatable; the working directory is searched "
            "too): it registers custom backbones. `train` records it in the run's config.",
        ),
    ] = None,
) -> None:
    """Learn image similarity with triplet losses: train, evaluate, embed, inspect."""
    with user_errors():
        import_backbone_modules(imports or [], working_dir=True)
    ctx.obj = {"imports": imports or []}


app.command()(train)
app.command()(evaluate)
app.command()(embed)
app.command()(report)
app.command()(benchmark)
app.command()(summary)
app.command()(search)
app.command()(match)
app.command()(predict)
app.command()(serve)
app.add_typer(data.app, name="data")
app.add_typer(export.app, name="export")
app.add_typer(index.app, name="index")


def configure_logging() -> None:
    """Warnings and errors to stderr. Under torchrun the ranks after 0 show errors only,
    marked with their rank: every rank reads the same data and would repeat rank 0's
    warnings (images skipped, layers not made global) once per process."""
    rank = os.environ.get("RANK", "0").strip() or "0"
    if rank == "0":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        return
    logging.basicConfig(level=logging.ERROR, format=f"rank {rank}: %(levelname)s: %(message)s")
    warnings.simplefilter("ignore")


def main() -> None:
    """Console-script entry point."""
    configure_logging()
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not UTF-8 (held as surrogates) is printed escaped: with a UTF-8
        # locale other than C, Python's streams are strict and printing it was a traceback.
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    app()
