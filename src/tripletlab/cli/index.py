"""`tripletlab index ...`: build, grow, shrink, inspect and calibrate a gallery index."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from tripletlab.cli.common import ForceOption, console, user_errors
from tripletlab.index import DEFAULT_PRECISIONS, KINDS, EmbeddingIndex, IndexSettings
from tripletlab.index.calibration import Calibration
from tripletlab.runs import RunDir
from tripletlab.search import SPLITS, add_images, build_index, calibrate_index, remove_items

app = typer.Typer(help="Build and manage a run's gallery index (FAISS).", no_args_is_help=True)

RunOption = Annotated[
    Path | None, typer.Option("--run", help="The run whose model embeds \\[the manifest's].")
]


@app.command()
def build(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    dataset: Annotated[
        str | None,
        typer.Option(help="mnist, fashion-mnist or an image folder \\[the run's data set]."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help=f"{', '.join(SPLITS)} \\[train of the run's data, all of another]."),
    ] = None,
    kind: Annotated[str, typer.Option(help=f"{', '.join(KINDS)}.")] = "exact",
    out: Annotated[Path | None, typer.Option(help="Index folder [RUN_DIR/index].")] = None,
    hnsw_m: Annotated[int, typer.Option(help="hnsw: links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="hnsw: candidates per query.")] = 128,
    nlist: Annotated[int | None, typer.Option(help="ivf-pq: lists [~4 sqrt(N)].")] = None,
    pq_m: Annotated[int | None, typer.Option(help="ivf-pq: bytes per vector [D / 4].")] = None,
    nprobe: Annotated[int, typer.Option(help="ivf-pq: lists searched per query.")] = 16,
) -> None:
    """Embed a gallery with the run's best model and save its index."""
    start = time.perf_counter()
    with user_errors():
        settings = IndexSettings(kind, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist,  # type: ignore[arg-type]
                                 pq_m=pq_m, nprobe=nprobe)  # fmt: skip
        index = build_index(run_dir, dataset, split, settings, out)
    where = out or RunDir(run_dir).index
    console.print(f"indexed {len(index):,} images of the {index.built_from['gallery']} "
                  f"({index.settings.kind}, {index.dim}-d, {index.distance}) in "
                  f"{time.perf_counter() - start:.1f} s: {where}")  # fmt: skip


@app.command()
def add(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    label: Annotated[
        str | None, typer.Option(help="Their class \\[the class sub-folder's name].")
    ] = None,
    run: RunOption = None,
    force: ForceOption = False,
) -> None:
    """Embed images and add them to the index (a new label becomes a new class)."""
    with user_errors():
        ids, skipped = add_images(index_dir, images, label, run, force)
    note = f" ({skipped} unreadable files skipped)" if skipped else ""
    added = (f"{len(ids):,} images as ids {ids[0]}..{ids[-1]}" if len(ids) > 1
             else f"1 image as id {ids[0]}")  # fmt: skip
    console.print(f"added {added}{note}")


@app.command()
def remove(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    ids: Annotated[list[int], typer.Argument(help="Ids of the items to remove.")],
) -> None:
    """Remove items by id (exact and ivf-pq indexes; an HNSW graph cannot delete)."""
    with user_errors():
        removed = remove_items(index_dir, ids)
    console.print(f"removed {removed} item{'' if removed == 1 else 's'}")


def thresholds_table(calibration: Calibration) -> Table:
    """The calibrated thresholds as a table."""
    table = Table(title=Text(f"thresholds ({calibration.queries:,} queries: "
                             f"{calibration.source})"))  # fmt: skip
    columns = ["target precision", "distance <=", "precision", "recall", "answered"]
    if calibration.open_set:
        columns.append("other classes let in")
    for column in columns:
        table.add_column(column, justify="right")
    for t in calibration.thresholds:
        distance = "not reached" if t.distance is None else f"{t.distance:.4f}"
        cells = [f"{t.target:g}", distance, f"{t.precision:.4f}", f"{t.recall:.4f}",
                 f"{t.answered:.4f}"]  # fmt: skip
        if calibration.open_set:
            cells.append(f"{t.impostors_accepted or 0:.4f}")
        table.add_row(*cells)
    return table


@app.command()
def info(index_dir: Annotated[Path, typer.Argument(help="An index folder.")]) -> None:
    """Kind, size, model and calibration of an index, and its items per class."""
    with user_errors():
        index = EmbeddingIndex.load(index_dir)
    table = Table(title=Text(str(index_dir)), show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    settings = index.settings
    tuning = {"hnsw": f"M {settings.hnsw_m}, efSearch {settings.ef_search}",
              "ivf-pq": f"nlist {settings.nlist}, m {settings.pq_m}, nbits {settings.nbits}, "
                        f"nprobe {settings.nprobe}"}.get(settings.kind, "")  # fmt: skip
    rows = [("kind", f"{settings.kind} {tuning}".strip()), ("items", f"{len(index):,}"),
            ("dimension", str(index.dim)), ("distance", index.distance),
            ("normalized", str(index.normalized)), ("model sha256", str(index.model_sha256)),
            *((key, str(value)) for key, value in index.built_from.items())]  # fmt: skip
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    labels, counts = np.unique(index.items.labels, return_counts=True)
    per_class = ", ".join(
        f"{index.label_name(int(y))}: {n:,}" for y, n in zip(labels, counts, strict=True)
    )
    console.print(f"items per class: {per_class}")
    if index.calibration is None:
        console.print("not calibrated: tripletlab index calibrate " + shlex.quote(str(index_dir)))
    else:
        console.print(thresholds_table(index.calibration))


@app.command()
def calibrate(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    split: Annotated[str, typer.Option(help="Held-out labelled part of the run's data.")] = "val",
    precision: Annotated[
        list[float] | None, typer.Option(help="Target precisions (repeatable) [0.9 0.95 0.99].")
    ] = None,
    open_set: Annotated[
        bool,
        typer.Option(
            "--open-set/--closed-set",
            help="Also keep out queries of classes the "
            "gallery lacks (each query's nearest other class counts as a wrong match).",
        ),
    ] = True,
    run: RunOption = None,
    force: ForceOption = False,
) -> None:
    """Find the distance thresholds at which the nearest item's label is right with the
    target precisions, and store them in the manifest."""
    with user_errors():
        targets = tuple(precision or DEFAULT_PRECISIONS)
        calibration = calibrate_index(index_dir, split, targets, run, force, open_set)
    console.print(thresholds_table(calibration))
