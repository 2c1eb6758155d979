"""`RUN_DIR/report.md` and `RUN_DIR/plots/`: what a trained model learned, at a glance."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.evaluation import evaluate_run, load_run, pair_distances
from tripletlab.index import nearest
from tripletlab.runs import PLOTS
from tripletlab.utils.io import atomic_write_bytes
from tripletlab.viz.plots import distance_histogram, loss_plot, neighbours_grid, umap_plot

_UMAP_NEIGHBOURS = 15


def nearest_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) indices of the k nearest items (Euclidean) of each query, itself left out."""
    queries = np.asarray(queries, dtype=np.int64)
    return nearest(embeddings, np.asarray(embeddings)[queries], k, exclude=queries)[1]


def umap_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D UMAP of (N, D) embeddings; deterministic for a seed.

    The k-NN graph is computed exactly here and handed to umap-learn, which skips its
    approximate search (and most of its numba compilation): about 20 s for 10,000 points.
    """
    if len(embeddings) < 3:  # UMAP needs two neighbours; two points are two points anyway
        return np.array([[0.0, 0.0], [1.0, 0.0]][: len(embeddings)], dtype=np.float32)
    import umap  # heavy import (numba), only when a report is made

    k = min(_UMAP_NEIGHBOURS, len(embeddings) - 1)
    # Self included, as UMAP expects.
    distances, indices = nearest(embeddings, k=k)
    knn = (indices.astype(np.int32), distances, None)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=k, random_state=seed, init="pca", n_epochs=200,
        precomputed_knn=knn,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and the like
        return reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))


def _query_examples(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """A fixed choice of query images: `per_class` of each class (at most 12 rows in all)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels)[:12]:
        members = np.flatnonzero(labels == label)
        chosen.extend(rng.choice(members, min(per_class, len(members)), replace=False))
    return np.array(chosen[:12])


def _markdown(metrics: dict[str, Any], title: str, samples: str | None = None) -> str:
    verification = metrics.get("verification", {})
    lines = [f"# {title}", "", "## Test-set metrics", "", "| metric | value |", "|---|---|"]
    for key, label in [("precision_at_1", "Precision@1"), ("r_precision", "R-Precision"),
                       ("map_at_r", "MAP@R"),
                       ("knn_accuracy", "1-NN accuracy (test vs train + val)"),
                       ("accuracy", "classifier accuracy"),
                       ("embeddings_per_second", "embeddings / s"),
                       ("train_seconds", "train seconds")]:  # fmt: skip
        if key in metrics:
            value = metrics[key]
            lines.append(
                f"| {label} | {value:.4f} |" if value < 100 else f"| {label} | {value:,.1f} |"
            )
    if verification:
        lines += ["", "## Verification (same class or not, from pair distances)", "",
                  "| ROC AUC | balanced accuracy | threshold | TAR at FAR 1e-3 "
                  "| pairs (same / different) |",
                  "|---|---|---|---|---|",
                  f"| {verification['roc_auc']:.4f} | {verification['accuracy']:.4f} | "
                  f"{verification['threshold']:.4f} | {verification['tar_at_far']:.4f} | "
                  f"{verification['num_same']:,} / {verification['num_different']:,} |",
                  ]  # fmt: skip
    lines += ["", "## Per-class test triplets", "",
              "`diff = d(a,p)^2 - d(a,n)^2` per triplet; `acc` = share with `diff < 0`.", "",
              "| class | triplets | min | max | mean | acc |", "|---|---|---|---|---|---|",
              ]  # fmt: skip
    for row in metrics.get("per_class", []):
        lines.append(f"| {row['name']} | {row['triplets']} | {row['min']:.4f} | "
                     f"{row['max']:.4f} | {row['mean']:.4f} | {row['acc']:.4f} |")  # fmt: skip
    if metrics.get("per_class_accuracy"):
        lines += ["", "## Classifier accuracy per class", "", "| class | accuracy |", "|---|---|"]
        lines += [
            f"| {name} | {value:.4f} |" for name, value in metrics["per_class_accuracy"].items()
        ]
    lines += ["", "## Plots", ""]
    if samples is not None:  # written when training started
        lines += ["### Training images", "", f"![Training images]({samples})", ""]
    for name, caption in [("loss", "Training loss and validation metrics"),
                          ("distances", "Pair distances on the test set"),
                          ("umap", "UMAP of the test embeddings"),
                          ("neighbours", "Nearest neighbours (red: wrong class)")]:  # fmt: skip
        lines += [f"### {caption}", "", f"![{caption}]({PLOTS}/{name}.png)", ""]
    return "\n".join(lines)


def build_report(run_dir: Path, seed: int = 0) -> Path:
    """Write `report.md` and the four plots of a run, from its checkpoint and `metrics.json`
    (evaluating the run first if its metrics lack the per-class or verification parts).

    Returns:
        The path of `report.md`.
    """
    start = time.perf_counter()
    run, data, embedder = load_run(run_dir)
    metrics = run.read_metrics()
    if "per_class" not in metrics:
        metrics = evaluate_run(run)
    test = data.test
    embeddings = embedder.embed(test.images)
    plots = run.plots
    loss_plot(run.read_history(), plots / "loss.png")
    distances, same = pair_distances(embeddings, test.labels)
    threshold = metrics.get("verification", {}).get("threshold")
    distance_histogram(distances, same, threshold, plots / "distances.png")
    umap_plot(umap_2d(embeddings, seed), test.labels, test.class_names, plots / "umap.png")
    queries = _query_examples(test.labels, per_class=1, seed=seed)
    neighbours = nearest_neighbours(embeddings, queries, k=min(8, len(embeddings) - 1))
    neighbours_grid(test.images, test.labels, queries, neighbours, test.class_names,
                    plots / "neighbours.png")  # fmt: skip
    report = run.report_file
    samples = run.samples_file
    link = samples.relative_to(run.path).as_posix() if samples.is_file() else None
    text = _markdown(metrics, f"tripletlab report: {run.path.name}", link)
    atomic_write_bytes(report, text.encode())
    run.write_metrics({"report_seconds": time.perf_counter() - start})
    return report
