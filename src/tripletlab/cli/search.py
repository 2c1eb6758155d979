"""`tripletlab search` and `tripletlab match`: query a run's gallery index with images."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tripletlab.cli.common import ForceOption, console, echo_json, user_errors
from tripletlab.search import Searcher
from tripletlab.viz import search_grid

RunArgument = Annotated[Path, typer.Argument(help="A run folder.")]
ImagesArgument = Annotated[
    list[str], typer.Argument(help="Image files, or references such as mnist:test:0.")
]
IndexOption = Annotated[Path | None, typer.Option("--index", help="[RUN_DIR/index].")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON line per image.")]
Engine = Annotated[str, typer.Option(help="torch, or onnx (RUN_DIR/model.onnx).")]


def search(
    run_dir: RunArgument,
    images: ImagesArgument,
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per image.")] = 10,
    index: IndexOption = None,
    as_json: JsonOption = False,
    grid: Annotated[
        Path | None, typer.Option(help="Also save the images and neighbours as a PNG grid.")
    ] = None,
    force: ForceOption = False,
    engine: Engine = "torch",
) -> None:
    """The nearest gallery items of each image: rank, id, label, distance, source."""
    with user_errors():
        searcher = Searcher(run_dir, index, force, engine)
        results = searcher.search(images, k)
        if grid is not None:
            search_grid(searcher, images, results, grid)
    for image, hits in zip(images, results, strict=True):
        if as_json:
            payload = {"query": image, "neighbours": [dataclasses.asdict(h) for h in hits]}
            echo_json(payload)
            continue
        table = Table(title=Text(f"{image}: {len(hits)} nearest ({searcher.index.distance})"))
        for column in ("rank", "id", "label", "distance", "source"):
            table.add_column(column, justify="right" if column != "source" else "left")
        for hit in hits:
            table.add_row(str(hit.rank), str(hit.id), hit.label, f"{hit.distance:.4f}", hit.source)
        console.print(table)
    if grid is not None and not as_json:
        console.print(f"grid written to {grid}")


def match(
    run_dir: RunArgument,
    images: ImagesArgument,
    precision: Annotated[
        float, typer.Option(help="Use the threshold calibrated for this precision.")
    ] = 0.99,
    threshold: Annotated[
        float | None, typer.Option(help="A distance threshold instead of a calibrated one.")
    ] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
    force: ForceOption = False,
    engine: Engine = "torch",
) -> None:
    """The label of each image's nearest gallery item, or unknown when it is farther than
    the threshold."""
    with user_errors():
        searcher = Searcher(run_dir, index, force, engine)
        verdicts = searcher.match(images, precision, threshold)
    if as_json:
        for image, verdict in zip(images, verdicts, strict=True):
            payload = {"query": image, **dataclasses.asdict(verdict)}
            if not math.isfinite(verdict.distance):  # an empty index: no nearest item
                payload["distance"] = None
            echo_json(payload)
        return
    how = f"calibrated for precision {precision:g}" if threshold is None else "given"
    table = Table(title=Text(f"threshold {verdicts[0].threshold:.4f} ({how})"))
    for column in ("image", "match", "distance", "nearest id", "nearest label"):
        table.add_column(column)
    for image, verdict in zip(images, verdicts, strict=True):
        near = verdict.nearest
        cells = [str(near.id), near.label] if near else ["-", "-"]  # an empty index
        table.add_row(image, verdict.label, f"{verdict.distance:.4f}", *cells)
    console.print(table)
