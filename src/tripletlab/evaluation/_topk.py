"""Retrieval metrics from each query's nearest items, searched through `tripletlab.index`:
the short path for small sets with small classes, where a top-k search is a little faster
than the compiled engine (`benchmarks/index.py`, 2026-11-30, engine time / top-k time: 1.33x
for 5,000 items whose largest class holds 67, 1.09x for 10,000 with 125; 0.90x for 20,000
with 236, 0.40x for 2,000 with 215, 0.17x for 10,000 in 10 classes, where the engine's pass
without sorting wins by far).

Same results as the engine: items at the same distance rank the query's other classes first;
a query whose R-th item ties with the last one searched falls back to the engine (`None`).
"""

from __future__ import annotations

import numpy as np

from tripletlab.index import nearest

# The short path is taken up to this many items and this largest class.
MAX_ITEMS = 20_000
MAX_CLASS = 128


def takes_short_path(num_items: int, largest_class: int) -> bool:
    """Whether `topk_metrics` is the faster exact path for a set of this shape."""
    return num_items <= MAX_ITEMS and largest_class <= MAX_CLASS


def topk_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """Precision@1, R-Precision and MAP@R of every item queried against the others.

    Args:
        x: (N, D) float32 embeddings; y: (N,) int64 labels.
    Returns:
        The sums over queries as `retrieval_metrics` reports them (not yet divided), or None
        where a tie reaches past the searched neighbours (the caller then uses the engine).
    """
    counts = np.bincount(y)
    r = counts[y] - 1  # (N,) the R of each query
    queries = np.flatnonzero(r > 0)
    k = min(int(r.max()) + 1, len(y) - 1)  # one more than needed: shows whether a tie goes on
    squared, found = nearest(x, x[queries], k=k, exclude=queries, squared=True)
    same = y[found] == y[queries, None]  # (Q, k)
    # Equal distances: the other classes first (lexsort: last key is the primary one).
    order = np.lexsort((same, squared), axis=1)
    squared = np.take_along_axis(squared, order, axis=1)
    same = np.take_along_axis(same, order, axis=1)
    rq = r[queries]
    last_needed = squared[np.arange(len(queries)), rq - 1]
    if k == len(y) - 1:
        pass  # every other item was searched: no tie can reach past them
    elif (last_needed >= squared[:, -1]).any():
        return None
    within = np.arange(k)[None, :] < rq[:, None]
    hits = same & within
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)[None, :]
    return {
        "precision_at_1": float(same[:, 0].sum()),
        "r_precision": float((hits.sum(1) / rq).sum()),
        "map_at_r": float(((precision_at * hits).sum(1) / rq).sum()),
        "num_queries": len(queries),
    }
