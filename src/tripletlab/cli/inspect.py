"""`tripletlab evaluate`, `embed`, `report` and `benchmark`: use a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from tripletlab.cli.common import console, metrics_table, user_errors
from tripletlab.data import load_image_file
from tripletlab.evaluation import benchmark_run
from tripletlab.export.onnx import select_engine
from tripletlab.models import Embedder
from tripletlab.models import summary as summary_table
from tripletlab.training import evaluate_run
from tripletlab.viz import build_report


def evaluate(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Recompute the test metrics of a run's best checkpoint and rewrite metrics.json."""
    with user_errors():
        metrics = evaluate_run(run_dir)
    console.print(metrics_table(metrics, f"{run_dir}: test set ({metrics['num_test']:,} images)"))


def embed(
    run_dir: Annotated[Path, typer.Argument(help="A run or checkpoint folder.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Output .npy file (N, D) float32.")] = Path("vecs.npy"),
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    engine: Annotated[str, typer.Option(help="torch, or onnx (RUN_DIR/model.onnx).")] = "torch",
) -> None:
    """Embed image files (resized and converted to the model's input) into a .npy array."""
    with user_errors():
        embedder = Embedder.from_pretrained(run_dir)
        size, channels = embedder.config.image_size, embedder.config.channels
        pixels = np.stack([load_image_file(path, size, channels) for path in images])
        vectors = select_engine(embedder, run_dir, engine).embed(pixels, batch_size=batch_size)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, vectors)
    console.print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {out}")


def report(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Write RUN_DIR/report.md and RUN_DIR/plots/ (loss, distances, UMAP, neighbours)."""
    with user_errors():
        path = build_report(run_dir)
    console.print(f"report written to {path} (plots in {path.parent / 'plots'})")


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


def summary(run_dir: Annotated[Path, typer.Argument(help="A run or checkpoint folder.")]) -> None:
    """Print the model's layers, output shapes and (non-)trainable parameters, Keras style."""
    with user_errors():
        embedder = Embedder.from_pretrained(run_dir)
        config = embedder.config
        shape = (1, *config.image_size) + ((config.channels,) if config.channels > 1 else ())
        summary_table(embedder, torch.zeros(shape, dtype=torch.uint8), print_fn=typer.echo)
