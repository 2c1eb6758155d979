"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020), exact and chunked.

For every query, the other items are ranked by Euclidean distance with the query itself left
out; R is the number of other items of the query's class. Queries whose class has no other item
are skipped. Items of another class at the same distance as one of the query's class rank
first (a collapsed embedding scores 0, not 1). Paper: https://arxiv.org/abs/2003.08505

No row is sorted: a compiled pass per query (`_rows`) finds a distance within which the R
nearest lie and counts, for each other-class item within it, how many own-class items are
closer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

# Elements of one (queries x items) distance block; bounds memory whatever the data set size
# (128 MiB of float32). Measured on 60,000 x 256: 2^25 took 13.4 to 14.4 s, 2^23 17.5 to 20.1 s,
# 2^21 27.0 s, 2^27 14.0 s (bigger blocks make the products cheaper: 4.3 s against 5.5 s).
_BLOCK_ELEMENTS = 1 << 25
# Variance share allowed off the principal axes for ranking through them (see `_low_rank`).
_LOW_RANK_TAIL = 1e-4


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


def _low_rank(x: Tensor) -> tuple[Tensor, Tensor, Tensor, float] | None:
    """Principal-axes coordinates of `x` when a few axes hold nearly all its variance.

    Returns None, or (z, norms, error, slack): z (N, m) float32 coordinates on m <= D / 4
    axes, norms (N,) float32 squared norms of the centred items, error (N,) float64 and slack
    such that |exact - approximate squared distance| <= error_i * error_j + slack, where the
    approximation is norms_i + norms_j - 2 z_i . z_j: it misses -2 r_i . r_j, r being the
    residuals off the axes, and is computed in float32 (slack). Trained embeddings often
    qualify (256-d MNIST ones: 10 axes hold all but 1e-4 of the variance).
    """
    n, dim = x.shape
    if dim < 64 or n < 4 * dim:
        return None
    centred = (x - x.mean(0)).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    tail = eigenvalues.clamp_min(0).flip(0).cumsum(0).flip(0)  # tail[m]: variance off m axes
    total = float(tail[0])
    if total <= 0.0:
        return None
    m = next((m for m in range(8, dim // 4 + 1, 8) if tail[m] <= _LOW_RANK_TAIL * total), None)
    if m is None:
        return None
    axes = eigenvectors[:, :m]
    z = centred @ axes
    residual = (centred - z @ axes.T).norm(dim=1)  # (N,)
    norms = centred.square().sum(1)
    # float32 rounding of norms_i + norms_j - 2 z_i . z_j is under (m + 3) * 2^-24 * 4 * the
    # largest squared norm; allowed for three times over.
    slack = 3 * (m + 3) * 4.0 * float(norms.max()) * 2.0**-24
    return z.float(), norms.float(), (2.0**0.5) * residual, slack


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R of every item queried against all the others.

    Exact; equal distances rank the other class first. Memory stays bounded (blocks of
    queries); embeddings whose variance lies in a few principal axes are ranked through those
    axes and only the close calls are recomputed in full.

    Args:
        embeddings: (N, D) float.
        labels: (N,) integer class ids.
    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r` and `num_queries`.
    """
    from tripletlab.evaluation import _rows  # numba: compiled on first use, then cached

    x, y = _as_tensors(embeddings, labels)
    order = torch.argsort(y, stable=True)
    x, y = x[order].contiguous(), y[order]
    _, counts = torch.unique_consecutive(y, return_counts=True)
    if len(y) == 0 or int(counts.max()) < 2:
        raise ValueError("retrieval metrics need at least one class with two or more items")
    n = len(x)
    x_sq = x.square().sum(1)
    low_rank = _low_rank(x)
    if low_rank is None:  # rank on the exact distances
        coords, coord_sq, error, slack = x, x_sq, torch.zeros(n, dtype=torch.float64), 0.0
    else:
        coords, coord_sq, error, slack = low_rank
    x_np, x_sq_np, coord_sq_np = x.numpy(), x_sq.numpy(), coord_sq.numpy()
    error_np = error.numpy()
    threads = max(1, torch.get_num_threads())
    scratch = [_rows.workspace(n, int(counts.max()) - 1) for _ in range(threads)]
    sums = np.zeros(3)
    step = max(1, min(_BLOCK_ELEMENTS // n, int(counts.max())))  # rows of one class at most
    dot_buffer = torch.empty(step * n)
    same_buffer = torch.empty(step * int(counts.max()))
    stops = counts.cumsum(0).tolist()
    with ThreadPoolExecutor(threads) as pool:
        for start, stop in zip([0, *stops[:-1]], stops, strict=True):
            if stop - start < 2:  # a class of one item: no queries
                continue
            for first in range(start, stop, step):
                rows = slice(first, min(first + step, stop))  # queries of one class
                b = rows.stop - rows.start
                dot = torch.mm(coords[rows], coords.T, out=dot_buffer[: b * n].view(b, n))
                same = same_buffer[: b * (stop - start)].view(b, -1)
                if low_rank is None:  # the exact products are in `dot` already
                    same.copy_(dot[:, start:stop])
                else:
                    torch.mm(x[rows], x[start:stop].T, out=same)
                out = np.empty((b, 3))
                args = (same.numpy(), dot.numpy(), np.arange(rows.start, rows.stop), start, stop,
                        x_sq_np, coord_sq_np, error_np, slack, x_np)  # fmt: skip
                jobs = [pool.submit(_rows.query_rows, *args, scratch[t], out, t, threads)
                        for t in range(threads)]  # fmt: skip
                for job in jobs:
                    job.result()
                sums += out.sum(0)
    num_queries = int(counts[counts > 1].sum())
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
