"""`tripletlab predict`: the class of each image, from a run trained with a classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tripletlab.cli.common import console, echo_json, user_errors
from tripletlab.search import Predictor


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run trained with --loss cross-entropy.")],
    images: Annotated[
        list[str], typer.Argument(help="Image files, or references such as mnist:test:0.")
    ],
    top: Annotated[int, typer.Option(help="Also list the N most probable classes.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per image.")] = False,
    engine: Annotated[str, typer.Option(help="torch, or onnx (RUN_DIR/model.onnx).")] = "torch",
) -> None:
    """The most probable class of each image and its probability (the run's classifier)."""
    with user_errors():
        if top < 1:
            raise ValueError(f"--top must be at least 1, got {top}")
        results = Predictor(run_dir, engine).predict(images, top)
    if as_json:
        for image, result in zip(images, results, strict=True):
            top_list = [{"label": name, "probability": p} for name, p in result.top]
            payload = {"image": image, "label": result.label, "probability": result.probability,
                       "top": top_list}  # fmt: skip
            echo_json(payload)
        return
    table = Table(title="predicted classes")
    for column in ("image", "class", "probability", *(["top"] if top > 1 else [])):
        table.add_column(column)
    for image, result in zip(images, results, strict=True):
        cells = [image, result.label, f"{result.probability:.4f}"]
        if top > 1:
            cells.append(", ".join(f"{name} {p:.3f}" for name, p in result.top))
        table.add_row(*cells)
    console.print(table)
