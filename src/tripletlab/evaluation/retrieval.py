"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020), exact and chunked.

For every query, the other items are ranked by Euclidean distance with the query itself left
out; R is the number of other items of the query's class. Queries whose class has no other item
are skipped. Paper: https://arxiv.org/abs/2003.08505
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Elements of one (queries x items) distance block; bounds memory whatever the data set size.
_BLOCK_ELEMENTS = 1 << 23


def _as_tensors(embeddings: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not torch.isfinite(x).all():
        raise ValueError("embeddings contain NaN or Inf")
    return x, y


def _squared_distances(queries: Tensor, items: Tensor, item_sq: Tensor) -> Tensor:
    """(q, D), (n, D) -> (q, n) squared Euclidean distances (ranking only needs the order)."""
    return torch.addmm(item_sq[None, :], queries, items.T, alpha=-2.0).add_(
        queries.square().sum(1, keepdim=True)
    )


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R of every item queried against all the others.

    Args:
        embeddings: (N, D) float.
        labels: (N,) integer class ids.
    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r` and `num_queries`.
    """
    x, y = _as_tensors(embeddings, labels)
    counts = torch.bincount(y - y.min())
    relevant = counts[y - y.min()] - 1  # (N,) R of each query
    max_r = int(relevant.max()) if len(y) else 0
    if max_r == 0:
        raise ValueError("retrieval metrics need at least one class with two or more items")
    item_sq = x.square().sum(1)
    rank = torch.arange(1, max_r + 1, dtype=torch.float64)  # (R_max,)
    sums = torch.zeros(3, dtype=torch.float64)
    step = max(1, _BLOCK_ELEMENTS // len(x))
    for start in range(0, len(x), step):
        rows = torch.arange(start, min(start + step, len(x)))
        dist = _squared_distances(x[rows], x, item_sq)  # (q, N)
        dist[torch.arange(len(rows)), rows] = torch.inf  # the query is not its own neighbour
        order = dist.topk(max_r, dim=1, largest=False, sorted=True).indices  # (q, R_max)
        r = relevant[rows, None]  # (q, 1)
        hits = (y[order] == y[rows, None]) & (rank[None, :] <= r)  # (q, R_max)
        hits = hits.double()
        keep = r.squeeze(1) > 0
        precision_at_k = hits.cumsum(1) / rank
        r_float = r.squeeze(1).double().clamp_min(1)
        sums[0] += hits[keep, 0].sum()
        sums[1] += (hits.sum(1) / r_float)[keep].sum()
        sums[2] += ((precision_at_k * hits).sum(1) / r_float)[keep].sum()
    num_queries = int((relevant > 0).sum())
    return {
        "precision_at_1": float(sums[0] / num_queries),
        "r_precision": float(sums[1] / num_queries),
        "map_at_r": float(sums[2] / num_queries),
        "num_queries": num_queries,
    }


def knn_accuracy(
    query_embeddings: np.ndarray,
    query_labels: np.ndarray,
    reference_embeddings: np.ndarray,
    reference_labels: np.ndarray,
) -> float:
    """Share of queries whose nearest reference item (Euclidean) has the query's label.

    Args:
        query_embeddings: (Q, D), e.g. the test set.
        query_labels: (Q,).
        reference_embeddings: (M, D), e.g. the training set.
        reference_labels: (M,).
    """
    queries, query_y = _as_tensors(query_embeddings, query_labels)
    items, item_y = _as_tensors(reference_embeddings, reference_labels)
    if len(items) == 0 or len(queries) == 0:
        raise ValueError("k-NN accuracy needs at least one query and one reference item")
    item_sq = items.square().sum(1)
    correct = 0
    step = max(1, _BLOCK_ELEMENTS // len(items))
    for start in range(0, len(queries), step):
        block = slice(start, start + step)
        nearest = _squared_distances(queries[block], items, item_sq).argmin(1)
        correct += int((item_y[nearest] == query_y[block]).sum())
    return correct / len(queries)
