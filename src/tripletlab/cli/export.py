"""`tripletlab export ...`: files for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.export import export_run_projector
from tripletlab.export.onnx import export_run_onnx

app = typer.Typer(help="Export a trained run for other tools.", no_args_is_help=True)


@app.command()
def projector(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    split: Annotated[str, typer.Option(help="test, train or val.")] = "test",
    limit: Annotated[
        int | None, typer.Option(help="Only N images, drawn at random (seed 0).")
    ] = None,
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


@app.command()
def onnx(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    out: Annotated[Path | None, typer.Option(help="Output file [RUN_DIR/model.onnx].")] = None,
    quantize: Annotated[
        str | None, typer.Option(help="int8: also write model.int8.onnx and its P@1 cost.")
    ] = None,
) -> None:
    """Write model.onnx (uint8 images in, rescaling inside) and check it against PyTorch."""
    with user_errors():
        result = export_run_onnx(run_dir, out=out, quantize=quantize)
    console.print(
        f"wrote {result['path']} (max difference from PyTorch on {result['num_checked']:,} "
        f"test images: {result['max_abs_difference']:.1e})"
    )
    if quantize:
        console.print(
            f"wrote {result['int8_path']}: Precision@1 {result['int8_precision_at_1']:.4f} "
            f"against {result['precision_at_1']:.4f} in float32 "
            f"(loss {result['int8_precision_at_1_loss']:+.4f})"
        )
