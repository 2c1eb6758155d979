"""`tripletlab summary`: the model's layers, Keras style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from tripletlab.cli.common import user_errors
from tripletlab.models import Embedder
from tripletlab.models import summary as summary_table


def summary(run_dir: Annotated[Path, typer.Argument(help="A run or checkpoint folder.")]) -> None:
    """Print the model's layers, output shapes and (non-)trainable parameters, Keras style."""
    with user_errors():
        embedder = Embedder.from_pretrained(run_dir)
        config = embedder.config
        shape = (1, *config.image_size) + ((config.channels,) if config.channels > 1 else ())
        summary_table(embedder, torch.zeros(shape, dtype=torch.uint8), print_fn=typer.echo)
