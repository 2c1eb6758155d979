"""The report's plots: loss curves, distance histograms, UMAP scatter, nearest-neighbour grid.

Each function takes plain arrays and writes one PNG; matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

DPI = 110  # of every saved picture


def _save(figure: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def loss_plot(history: dict[str, Any], path: Path) -> Path:
    """Training loss per step (raw and smoothed) and per epoch; validation metrics per epoch.

    Args:
        history: the run's `history.json` (`step_losses`, `epochs`).
    """
    steps = np.asarray(history.get("step_losses", []), dtype=np.float64)
    epochs = history.get("epochs", [])
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    if len(steps):
        left.plot(np.arange(1, len(steps) + 1), steps, color="#c6dbef", lw=0.6, label="per step")
        window = min(len(steps), max(5, len(steps) // 50))
        smooth = _smooth(steps, window)
        left.plot(np.arange(window, window + len(smooth)), smooth, color="#08519c", lw=1.6,
                  label=f"per step, mean of {window}")  # fmt: skip
    if epochs:
        # Where each trained epoch ends (a phase stopped early skips epoch numbers).
        steps_per_epoch = len(steps) / len(epochs) if len(steps) else 1
        x = [steps_per_epoch * (i + 1) for i in range(len(epochs))]
        left.plot(x, [e["loss"] for e in epochs], "o-", color="#e6550d", label="epoch mean")
    left.set(title="Training loss", xlabel="step", ylabel="triplet loss")
    left.legend(loc="best")
    left.grid(alpha=0.3)
    keys = [("val_precision_at_1", "Precision@1"), ("val_map_at_r", "MAP@R"),
            ("val_r_precision", "R-Precision"),
            ("val_accuracy", "classifier accuracy")]  # fmt: skip
    plotted = False
    for key, label in keys:
        if epochs and key in epochs[0]:
            right.plot([e["epoch"] for e in epochs], [e[key] for e in epochs], "o-", label=label)
            plotted = True
    right.set(title="Validation metrics", xlabel="epoch", ylabel="score")
    if plotted:
        right.legend(loc="best")
        right.set_xticks([e["epoch"] for e in epochs])
    else:
        right.text(0.5, 0.5, "no validation set", ha="center", va="center",
                   transform=right.transAxes)  # fmt: skip
    right.grid(alpha=0.3)
    figure.suptitle("Training history")
    return _save(figure, path)


def distance_histogram(
    distances: np.ndarray, same: np.ndarray, threshold: float | None, path: Path
) -> Path:
    """Histograms of same-class and different-class pair distances with the chosen threshold."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    top = float(np.max(distances)) if len(distances) else 0.0
    bins = np.linspace(0.0, top if top > 0 else 1.0, 80)  # all 0 (collapsed): one bar at 0
    axis.hist(distances[same], bins=bins, density=True, alpha=0.6, color="#2ca25f",
              label=f"anchor-positive ({int(same.sum()):,} pairs)")  # fmt: skip
    axis.hist(distances[~same], bins=bins, density=True, alpha=0.6, color="#de2d26",
              label=f"anchor-negative ({int((~same).sum()):,} pairs)")  # fmt: skip
    if threshold is not None:
        axis.axvline(threshold, color="black", ls="--", lw=1.5,
                     label=f"best threshold {threshold:.3f}")  # fmt: skip
    axis.set(title="Test-set pair distances", xlabel="Euclidean distance", ylabel="density")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a peak
    axis.grid(alpha=0.3)
    return _save(figure, path)


def umap_plot(points: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path) -> Path:
    """Scatter of 2-D points coloured by class, with a legend.

    Args:
        points: (N, 2) e.g. a UMAP projection of the test embeddings.
        labels: (N,) class ids.
    """
    figure, axis = plt.subplots(figsize=(8, 7))
    classes = np.unique(labels)
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, label in enumerate(classes):
        mask = labels == label
        name = class_names[label] if label < len(class_names) else str(label)
        axis.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.6,
                     color=colours(i % colours.N), label=name)  # fmt: skip
    axis.set(title=f"UMAP of {len(points):,} test embeddings", xlabel="UMAP 1", ylabel="UMAP 2")
    axis.legend(title="class", markerscale=4, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


def neighbours_grid(
    images: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    neighbours: np.ndarray,
    class_names: list[str],
    path: Path,
    title: str | None = None,
    captions: list[list[str]] | None = None,
) -> Path:
    """Each query image followed by its nearest neighbours; wrong neighbours framed in red;
    `captions[q][j]`, if given, under neighbour j of query q (its label and distance, say).

    Args:
        images: (N, H, W[, C]) uint8.
        labels: (N,); -1 for an image of no known class (a query: nothing is framed red).
        queries: (Q,) indices of the query images.
        neighbours: (Q, K) indices of their nearest neighbours, nearest first; -1 for none.
    """
    rows, k = neighbours.shape
    tall = 1.3 if captions is None else 1.6  # room for a caption under each row
    figure, axes = plt.subplots(rows, k + 1, figsize=(1.2 * (k + 1), tall * rows), squeeze=False)
    grey = images.ndim == 3
    for row, query in enumerate(queries):
        for col, index in enumerate([query, *neighbours[row]]):
            axis = axes[row, col]
            axis.set_xticks([])
            axis.set_yticks([])
            if index < 0:  # fewer neighbours than columns
                axis.set_axis_off()
                continue
            axis.imshow(images[index], cmap="gray" if grey else None, vmin=0, vmax=255)
            label = labels[index]
            name = "" if label < 0 else class_names[label] if label < len(class_names) else label
            if col and captions is not None:
                axis.set_xlabel(captions[row][col - 1], fontsize=7)
            if col == 0:
                axis.set_ylabel(f"query\n{name}", rotation=0, ha="right", va="center", fontsize=8)
                colour, width = "#3182bd", 3
            elif labels[query] >= 0 and label != labels[query]:
                colour, width = "red", 4
            else:
                colour, width = "#cccccc", 1
            axis.add_patch(Rectangle((0, 0), 1, 1, transform=axis.transAxes, fill=False,
                                     edgecolor=colour, lw=width, clip_on=False))  # fmt: skip
            for spine in axis.spines.values():
                spine.set_visible(False)
    for col in range(1, k + 1):
        axes[0, col].set_title(f"#{col}", fontsize=8)
    figure.suptitle(title or f"Nearest neighbours of {rows} test images (red: other class)")
    figure.subplots_adjust(top=1.0 - 0.5 / rows, wspace=0.08,
                           hspace=0.12 if captions is None else 0.35)  # fmt: skip
    return _save(figure, path)


def augment_grid(original: np.ndarray, augmented: np.ndarray, path: Path) -> Path:
    """One image and nine augmentations of it in a grid.

    Args:
        original: uint8 (H, W[, C]).
        augmented: uint8 (9, H, W[, C]).
    """
    figure, axes = plt.subplots(2, 5, figsize=(10, 4.4))
    grey = original.ndim == 2
    for index, axis in enumerate(axes.flat):
        image = original if index == 0 else augmented[index - 1]
        axis.imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255)
        axis.set_title("original" if index == 0 else f"augmented {index}", fontsize=9)
        axis.axis("off")
    figure.suptitle("Training augmentation (inside the model, training only)")
    return _save(figure, path)
