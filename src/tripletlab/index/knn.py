"""`nearest`: the k nearest items of queries by Euclidean distance, exactly, through an
`EmbeddingIndex`: the one k-NN path of the project (1-NN accuracy, the report's neighbour
grids and UMAP graph, offline triplet mining); `nearest_in_parts`, the same over items that
come part by part (the 1-NN gallery of evaluation, which may be larger than memory)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tripletlab.index.embedding_index import EmbeddingIndex


def nearest(
    items: np.ndarray,
    queries: np.ndarray | None = None,
    k: int = 1,
    exclude: np.ndarray | None = None,
    squared: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest items of each query, nearest first; equal distances in item order.

    Args:
        items: (N, D) float.
        queries: (Q, D) float; default the items themselves.
        k: neighbours per query (at most N, less one with `exclude`).
        exclude: (Q,) the position among the items of an item each query must not return
            (itself, when the queries are items); -1 for none.
        squared: return squared Euclidean distances (else Euclidean).
    Returns:
        distances (Q, k) float32, and positions (Q, k) int64 in `items`.
    Raises:
        ValueError: no items, NaN or Inf, or k out of range.
    """
    items = np.ascontiguousarray(items, dtype=np.float32)
    queries = items if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    if items.ndim != 2 or len(items) == 0 or queries.ndim != 2:
        raise ValueError(f"need items (N, D) with N >= 1 and queries (Q, D), got {items.shape}")
    limit = len(items) - (exclude is not None)
    if not 1 <= k <= limit:
        raise ValueError(f"k must be between 1 and {limit}, got {k}")
    index = EmbeddingIndex(items.shape[1], "squared-L2" if squared else "L2", normalized=False)
    index.add(items, np.zeros(len(items), dtype=np.int64))  # ids are the positions
    if exclude is None:
        return index.search(queries, k)
    exclude = np.asarray(exclude, dtype=np.int64)
    if exclude.shape != (len(queries),):
        raise ValueError(f"exclude must be ({len(queries)},), got {exclude.shape}")
    distances, positions = index.search(queries, k + 1)
    # Drop the excluded item where it came back, else the last of the k + 1.
    drop = np.argmax(positions == exclude[:, None], axis=1)
    drop[~(positions == exclude[:, None]).any(1)] = k
    keep = np.ones(positions.shape, dtype=bool)
    keep[np.arange(len(queries)), drop] = False
    return distances[keep].reshape(-1, k), positions[keep].reshape(-1, k)


def nearest_in_parts(
    parts: Iterable[np.ndarray], queries: np.ndarray, k: int = 1, squared: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`nearest` over items that come part after part, e.g. a gallery embedded chunk by chunk
    from a data set larger than memory: each part is searched alone and the k best so far are
    kept, so only one part (and its index) is in memory at a time, never all the items.

    Args:
        parts: (N_i, D) float arrays; an empty one is skipped.
        queries: (Q, D) float.
        k: neighbours per query (at most the number of items in all parts).
        squared: return squared Euclidean distances (else Euclidean).
    Returns:
        distances (Q, k) float32, and positions (Q, k) int64 counted through the parts in
        order, as if they were one array; equal distances in that order, as `nearest`.
    Raises:
        ValueError: no items at all, k above their number, or what `nearest` refuses.
    """
    best: tuple[np.ndarray, np.ndarray] | None = None
    offset = 0
    for part in parts:
        if len(part) == 0:
            continue
        distances, positions = nearest(part, queries, min(k, len(part)), squared=squared)
        positions += offset
        offset += len(part)
        if best is not None:  # earlier parts first, so that a stable sort keeps item order
            distances = np.concatenate([best[0], distances], axis=1)
            positions = np.concatenate([best[1], positions], axis=1)
            order = np.argsort(distances, axis=1, kind="stable")[:, :k]
            distances = np.take_along_axis(distances, order, axis=1)
            positions = np.take_along_axis(positions, order, axis=1)
        best = distances, positions
    if best is None or offset < k:
        raise ValueError(f"k must be between 1 and the number of items ({offset}), got {k}")
    return best
