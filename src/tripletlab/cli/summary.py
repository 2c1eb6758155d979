"""`tripletlab summary`: the model's layers, Keras style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from tripletlab.cli.common import user_errors
from tripletlab.models import Embedder
from tripletlab.models import summary as summary_table
from tripletlab.models.freezing import apply_phase_freeze
from tripletlab.runs import RunDir


def summary(
    run_dir: Annotated[Path, typer.Argument(help="A run or checkpoint folder.")],
    phase: Annotated[
        int | None,
        typer.Option(help="Show what phase N (1-based) of the run trains and keeps frozen."),
    ] = None,
) -> None:
    """Print the model's layers, output shapes and (non-)trainable parameters, Keras style."""
    with user_errors():
        embedder = Embedder.from_pretrained(run_dir)
        if phase is not None:
            phases = RunDir.open(run_dir).config.resolved_phases()
            if not 1 <= phase <= len(phases):
                raise ValueError(f"--phase must be in 1..{len(phases)}: the run has "
                                 f"{len(phases)} phase{'s' * (len(phases) > 1)}")  # fmt: skip
            rule = phases[phase - 1].freeze
            apply_phase_freeze(embedder, rule)
            typer.echo(f"phase {phase} of {len(phases)}: freeze {rule}")
        config = embedder.config
        shape = (1, *config.image_size) + ((config.channels,) if config.channels > 1 else ())
        summary_table(embedder, torch.zeros(shape, dtype=torch.uint8), print_fn=typer.echo)
