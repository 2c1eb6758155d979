"""`tripletlab export ...`: files for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.export import export_run_projector

app = typer.Typer(help="Export a trained run for other tools.", no_args_is_help=True)


@app.command()
def projector(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    split: Annotated[str, typer.Option(help="test, train or val.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Only the first N images.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder [RUN_DIR/projector].")] = None,
) -> None:
    """Write vecs.tsv, meta.tsv, sprite.png and projector_config.pbtxt (Embedding Projector)."""
    with user_errors():
        folder = export_run_projector(run_dir, split=split, limit=limit, out=out)
    console.print(f"projector files in {folder}")
    console.print(
        f"  web: load {folder / 'vecs.tsv'} and {folder / 'meta.tsv'} at projector.tensorflow.org"
    )
    console.print(f"  local: tensorboard --logdir {folder}  (then the PROJECTOR tab)")
