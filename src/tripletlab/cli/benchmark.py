"""`tripletlab benchmark`: embeddings per second of a run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.evaluation import benchmark_run


def benchmark(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    seconds: Annotated[float, typer.Option(help="Least time to measure, after warm-up.")] = 2.0,
    engine: Annotated[str, typer.Option(help="torch, or onnx (RUN_DIR/model.onnx).")] = "torch",
) -> None:
    """Measure embeddings per second of the run's model on its test images (eval mode)."""
    with user_errors():
        result = benchmark_run(run_dir, batch_size=batch_size, min_seconds=seconds, engine=engine)
    console.print(
        f"{result['embeddings_per_second']:,.0f} images/s, {result['ms_per_batch']:.2f} ms per "
        f"batch (batch size {result['batch_size']}, {result['batches']} batches in "
        f"{result['seconds']:.2f} s, {result['threads']} threads, {result['engine']}, CPU)"
    )
