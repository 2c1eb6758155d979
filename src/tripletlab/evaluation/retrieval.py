"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020), exact and chunked.

For every query, the other items are ranked by Euclidean distance with the query itself left
out; R is the number of other items of the query's class. Queries whose class has no other item
are skipped. Items of another class at the same distance as one of the query's class rank
first (a collapsed embedding scores 0, not 1). Paper: https://arxiv.org/abs/2003.08505

No row is sorted: a compiled pass per query finds a distance within which the R nearest lie
and counts, for each other-class item within it, how many own-class items are closer
(`_kernels`). The dense pass takes every item's distance; embeddings with a few dominant
principal axes (`_principal`) whose classes are compact enough go through the clustered pass,
which reads only the clusters of items that may lie within that distance (`_blocks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Literal

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from tripletlab.evaluation import _blocks, _principal, _topk
from tripletlab.index import nearest_in_parts

# Parts of a block of queries per thread: threads take the next part as they finish one, so
# that an uneven split of the work (some queries cost several times others) leaves no thread
# idle for long before the next block.
_PARTS_PER_THREAD = 4
_METRICS = ("precision_at_1", "r_precision", "map_at_r")


def _as_tensors(embeddings: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not torch.isfinite(x).all():
        raise ValueError("embeddings contain NaN or Inf")
    return x, y


def _run_part(
    kernel: Callable, args: tuple, free: SimpleQueue, out: np.ndarray, part: int, parts: int
) -> None:
    """Rows (or tiles) part, part + parts, ... of a block, with a scratch taken from `free`."""
    scratch = free.get()
    try:
        kernel(*args, scratch, out, part, parts)
    finally:
        free.put(scratch)


def retrieval_metrics(
    embeddings: np.ndarray, labels: np.ndarray, method: Literal["auto", "engine", "topk"] = "auto"
) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R of every item queried against all the others.

    Exact; equal distances rank the other class first. Two paths, same results (up to the
    order in which the per-query values are summed): small sets with small classes take each
    query's nearest items from `tripletlab.index` (`_topk`); the rest go through the compiled
    engine, the fast path for large sets. Its memory stays bounded (blocks of queries);
    embeddings whose variance lies in a few principal axes are ranked through those axes, by
    clusters of items where that pays, and only the items that may matter get their distance
    in full.

    Args:
        embeddings: (N, D) float.
        labels: (N,) integer class ids.
        method: "auto" (the faster path), "engine" or "topk" (the top-k path whatever the size;
            the engine still where a tie reaches past the searched items).
    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r` and `num_queries`.
    """
    x, y = _as_tensors(embeddings, labels)
    order = torch.argsort(y, stable=True)
    x, y = x[order].contiguous(), y[order]
    _, counts = torch.unique_consecutive(y, return_counts=True)
    if len(y) == 0 or int(counts.max()) < 2:
        raise ValueError("retrieval metrics need at least one class with two or more items")
    if method not in ("auto", "engine", "topk"):
        raise ValueError(f"unknown method {method!r}; expected auto, engine or topk")
    short = _topk.takes_short_path(len(y), int(counts.max()))
    if method == "topk" or (method == "auto" and short):
        _, compact = torch.unique_consecutive(y, return_inverse=True)
        sums = _topk.topk_metrics(x.numpy(), compact.numpy())
        if sums is not None:
            return _averages(np.array([sums[k] for k in _METRICS]), sums["num_queries"])
    stops = counts.cumsum(0).tolist()
    threads = max(1, torch.get_num_threads())
    # numpy's BLAS (some products go through it) keeps its own pool: held to torch's threads.
    with threadpool_limits(threads, user_api="blas"):
        return _metrics(x, y, counts, stops, threads)


def _metrics(
    x: Tensor, y: Tensor, counts: Tensor, stops: list[int], threads: int
) -> dict[str, float]:
    """`retrieval_metrics` of x, y sorted by class (counts the class sizes, stops their ends)."""
    classes = [(start, stop) for start, stop in zip([0, *stops[:-1]], stops, strict=True)
               if stop - start > 1]  # a class of one item has no queries  # fmt: skip
    low_rank = _principal.low_rank(x)
    if low_rank is None:  # rank on the exact distances
        zeros = torch.zeros(len(x), dtype=torch.float64)
        blocks = _blocks.dense_blocks(x, classes, threads, x, x.square().sum(1), zeros, 0.0)
    else:
        clustering = _principal.class_clusters(low_rank[0], stops)
        if _blocks.clusters_pay_off(x, y, counts, low_rank[0], clustering):
            blocks = _blocks.clustered_blocks(x, classes, threads, clustering, *low_rank)
        else:
            blocks = _blocks.dense_blocks(x, classes, threads, *low_rank)
    sums = np.zeros(3)
    parts = _PARTS_PER_THREAD * threads
    with ThreadPoolExecutor(threads) as pool:
        for kernel, args, scratch, out in blocks:
            free = SimpleQueue()  # one scratch per running part
            for space in scratch:
                free.put(space)
            jobs = [pool.submit(_run_part, kernel, args, free, out, part, parts)
                    for part in range(parts)]  # fmt: skip
            for job in jobs:
                job.result()
            sums += out.sum(0)
    return _averages(sums, int(counts[counts > 1].sum()))


def _averages(sums: np.ndarray, num_queries: int) -> dict[str, float]:
    """The metrics from their sums over the queries, in `_METRICS` order."""
    return {
        **{name: float(total / num_queries) for name, total in zip(_METRICS, sums, strict=True)},
        "num_queries": num_queries,
    }


def knn_accuracy(
    query_embeddings: np.ndarray,
    query_labels: np.ndarray,
    reference_embeddings: np.ndarray | Iterable[np.ndarray],
    reference_labels: np.ndarray,
) -> float:
    """Share of queries whose nearest reference item (Euclidean; of equal ones, the first)
    has the query's label, searched through `tripletlab.index` (FAISS, exact).

    Args:
        query_embeddings: (Q, D), e.g. the test set.
        query_labels: (Q,).
        reference_embeddings: (M, D), e.g. the training set; or its rows part after part,
            arrays (M_i, D) adding up to M (e.g. embedded chunk by chunk), so that a gallery
            larger than memory is never whole (`tripletlab.index.nearest_in_parts`).
        reference_labels: (M,).
    Raises:
        ValueError: no query or no reference item, shapes that disagree, NaN or Inf.
    """
    queries, query_y = _as_tensors(query_embeddings, query_labels)
    item_y = np.asarray(reference_labels)
    if isinstance(reference_embeddings, np.ndarray | Tensor):
        reference_embeddings = (_as_tensors(reference_embeddings, item_y)[0].numpy(),)
    counted = [0]

    def counting() -> Iterator[np.ndarray]:
        for part in reference_embeddings:
            counted[0] += len(part)
            yield np.asarray(part, dtype=np.float32)

    if len(item_y) == 0 or len(queries) == 0:
        raise ValueError("k-NN accuracy needs at least one query and one reference item")
    _, found = nearest_in_parts(counting(), queries.numpy(), k=1)
    if counted[0] != len(item_y):
        raise ValueError(f"{counted[0]} reference embeddings for {len(item_y)} labels")
    return float((item_y[found[:, 0]] == query_y.numpy()).mean())
