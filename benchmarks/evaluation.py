"""Retrieval metrics (Precision@1, R-Precision, MAP@R) on N x 256 embeddings, tripletlab against
two references measured in the same run: per-row `torch.topk` of the R nearest (tripletlab's
method before the compiled pass; exact, chunked) and, for the smaller sizes, a full sort of
every row (the obvious way).

Two kinds of embeddings: "trained-like" (10 classes on a 10-d subspace plus a little noise,
L2-normalised, overlapping about as much as a tutorial-network MNIST model's) and "isotropic"
(Gaussian in all 256 dimensions: nothing to exploit). The goal is 60,000 trained-like
embeddings in under 10 s.

A third kind, real trained embeddings, when given a run folder: `--run RUN_DIR` embeds the
60,000 MNIST training images with that run's model and times the metrics on them (`make bench
RUN=runs/...`). The goal is stated for those; the synthetic trained-like classes overlap more
than a trained model's and take the dense pass (see README, "How the retrieval metrics are
computed").

Run: `make bench` or `python benchmarks/evaluation.py [--run RUN_DIR]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import show, timed

from tripletlab.evaluation import retrieval_metrics


def topk_reference(x: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R from the R nearest of each row by `torch.topk`, in blocks of rows."""
    t, y = torch.from_numpy(x), torch.from_numpy(labels).long()
    relevant = torch.bincount(y)[y] - 1
    max_r = int(relevant.max())
    rank = torch.arange(1, max_r + 1, dtype=torch.float64)
    sq = t.square().sum(1)
    total = 0.0
    step = max(1, (1 << 23) // len(t))
    for start in range(0, len(t), step):
        rows = torch.arange(start, min(start + step, len(t)))
        dist = torch.addmm(sq[None], t[rows], t.T, alpha=-2.0).add_(sq[rows, None])
        dist[torch.arange(len(rows)), rows] = torch.inf
        order = dist.topk(max_r, dim=1, largest=False).indices
        r = relevant[rows, None]
        hits = ((y[order] == y[rows, None]) & (rank[None] <= r)).double()
        total += float(((hits.cumsum(1) / rank * hits).sum(1) / r.squeeze(1)).sum())
    return total / len(t)


def full_sort_reference(x: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R by sorting every row completely; returns MAP@R."""
    t, y = torch.from_numpy(x), torch.from_numpy(labels).long()
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


def trained_like(
    n: int, rng: np.random.Generator, spread: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n)
    axes = np.linalg.qr(rng.normal(size=(256, 10)))[0].T  # (10, 256) orthonormal
    signal = 2.8 * np.eye(10)[labels] + rng.normal(size=(n, 10)) * spread
    x = signal @ axes + 2e-3 * rng.normal(size=(n, 256))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def isotropic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n)
    return (rng.normal(size=(n, 256)) + 3 * np.eye(256)[labels]).astype(np.float32), labels


def trained(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 MNIST training images embedded by the run's model."""
    from tripletlab.data.mnist import load_mnist
    from tripletlab.models import Embedder

    train = load_mnist("train")
    embedder = Embedder.from_pretrained(run_dir)
    return embedder.embed(train.images, batch_size=1024), np.asarray(train.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="also time a trained run's MNIST embeddings")
    run_dir = parser.parse_args().run
    # Compile (or load) both passes before timing: overlapping classes take the dense one,
    # compact ones the clustered one.
    retrieval_metrics(*trained_like(2_000, np.random.default_rng(1)))
    retrieval_metrics(*trained_like(4_000, np.random.default_rng(1), spread=0.2))
    rows = []
    kinds = [
        ("trained-like", trained_like, (10_000, 60_000)),
        ("isotropic", isotropic, (10_000, 30_000)),
    ]
    if run_dir is not None:
        kinds.insert(0, (f"trained ({run_dir.name})", lambda n, rng: trained(run_dir), (60_000,)))
    for kind, make, sizes in kinds:
        for n in sizes:
            x, labels = make(n, np.random.default_rng(0))
            metrics = {}

            def ours(x=x, labels=labels, metrics=metrics):
                metrics.update(retrieval_metrics(x, labels))

            seconds = timed(ours, repeats=1, warmup=0)
            reference = {}

            def topk(x=x, labels=labels, reference=reference):
                reference["map_at_r"] = topk_reference(x, labels)

            topk_seconds = timed(topk, repeats=1, warmup=0)
            # float32 near-ties may order differently; anything more is a bug
            assert abs(metrics["map_at_r"] - reference["map_at_r"]) < 1e-5
            full = None
            if n <= 10_000:
                full = timed(lambda x=x, labels=labels: full_sort_reference(x, labels), 1, 0)
            rows.append([
                kind, n, f"{metrics['map_at_r']:.4f}", seconds, topk_seconds,
                f"{topk_seconds / seconds:.2f}x", "-" if full is None else full,
                "-" if full is None else f"{full / seconds:.2f}x",
            ])  # fmt: skip
    show(
        "retrieval metrics on N x D, 10 classes (seconds; goal: 60,000 x 256 < 10 s)",
        ["embeddings", "N", "MAP@R", "tripletlab", "top-k", "ratio", "full sort", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
