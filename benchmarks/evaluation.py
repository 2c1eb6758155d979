"""Retrieval metrics (Precision@1, R-Precision, MAP@R) on N x 256 embeddings: tripletlab's
chunked exact computation against a straightforward full-sort reference, same run.

Run: `make bench` or `python benchmarks/evaluation.py [N ...]`.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from _common import show, timed

from tripletlab.evaluation import retrieval_metrics


def full_sort_reference(x: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R by sorting every row completely (the obvious way); returns MAP@R."""
    t = torch.from_numpy(x)
    y = torch.from_numpy(labels)
    counts = torch.bincount(y)
    total = 0.0
    for start in range(0, len(t), 512):
        rows = torch.arange(start, min(start + 512, len(t)))
        dist = torch.cdist(t[rows], t)
        dist[torch.arange(len(rows)), rows] = torch.inf
        order = dist.argsort(dim=1)
        for i, row in enumerate(rows):
            r = int(counts[y[row]]) - 1
            hits = (y[order[i, :r]] == y[row]).double()
            total += float((hits.cumsum(0) / torch.arange(1, r + 1) * hits).sum() / r)
    return total / len(t)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 30_000]
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n)
        x = (rng.normal(size=(n, 256)) + 3 * np.eye(256)[labels]).astype(np.float32)
        ours = timed(lambda x=x, labels=labels: retrieval_metrics(x, labels), repeats=1, warmup=0)
        reference = timed(
            lambda x=x, labels=labels: full_sort_reference(x, labels), repeats=1, warmup=0
        )
        assert abs(retrieval_metrics(x, labels)["map_at_r"] - full_sort_reference(x, labels)) < 1e-6
        rows.append([n, ours, reference, f"{reference / ours:.2f}x"])
    show(
        "retrieval metrics on N x 256, 10 classes (seconds; goal: 60,000 in under 10 s)",
        ["N", "tripletlab", "full-sort reference", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
