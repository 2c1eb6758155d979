"""Per-class triplet report, as the triplet-loss MNIST project printed it.

For every class, each of its images is an anchor once, with a random positive of the same class
and a random negative of another class (fixed seed). `diff = d(a,p)^2 - d(a,n)^2` should be
negative; `acc` is the share of triplets where it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def class_triplets(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Test triplets: every item whose class has another item is an anchor once.

    Args:
        labels: (N,) class ids.
        seed: fixes the choice of positives and negatives.
    Returns:
        (T, 3) int64 indices (anchor, positive, negative).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    triplets = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        others = np.flatnonzero(labels != label)
        if len(members) < 2 or len(others) == 0:
            continue
        # A random positive other than the anchor: shift by 1..len-1 within the members.
        shift = rng.integers(1, len(members), size=len(members))
        positives = members[(np.arange(len(members)) + shift) % len(members)]
        negatives = rng.choice(others, size=len(members))
        triplets.append(np.stack([members, positives, negatives], axis=1))
    if not triplets:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(triplets).astype(np.int64)


def per_class_report(
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Statistics of `diff = d(a,p)^2 - d(a,n)^2` over each class's test triplets.

    Args:
        embeddings: (N, D).
        labels: (N,) class ids.
        class_names: names indexed by class id (default: the id as text).
        seed: fixes the triplets.
    Returns:
        One dict per class: `class`, `name`, `triplets`, `min`, `max`, `mean`, `acc`.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    triplets = class_triplets(labels, seed)
    anchor, positive, negative = (x[triplets[:, i]] for i in range(3))
    diff = ((anchor - positive) ** 2).sum(1) - ((anchor - negative) ** 2).sum(1)
    anchor_class = labels[triplets[:, 0]]
    rows = []
    for label in np.unique(anchor_class):
        values = diff[anchor_class == label]
        name = class_names[label] if class_names and 0 <= label < len(class_names) else str(label)
        rows.append({
            "class": int(label),
            "name": name,
            "triplets": len(values),
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "acc": float(np.mean(values < 0)),
        })  # fmt: skip
    return rows


def format_per_class(rows: list[dict[str, Any]]) -> str:
    """One block per class, in the style of the triplet-loss MNIST project's log."""
    lines = []
    for row in rows:
        lines.append(f"class {row['name']} ({row['triplets']} test triplets)")
        lines.append(
            f"  diff = d(a,p)^2 - d(a,n)^2  min: {row['min']:.4f}, max: {row['max']:.4f}, "
            f"avg: {row['mean']:.4f}"
        )
        lines.append(f"  acc: {row['acc']:.4f}")
    return "\n".join(lines)
