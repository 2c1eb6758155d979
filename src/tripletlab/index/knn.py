"""`nearest`: the k nearest items of queries by Euclidean distance, exactly, through an
`EmbeddingIndex`: the one k-NN path of the project (1-NN accuracy, the report's neighbour
grids and UMAP graph, offline triplet mining)."""

from __future__ import annotations

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
