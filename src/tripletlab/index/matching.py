"""Match queries: the nearest item's label, or unknown beyond a distance threshold; and the
nearest items of other classes than a query's (what open-set calibration compares with)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from tripletlab.index._faiss import faiss
from tripletlab.index.kinds import search_params

if TYPE_CHECKING:
    from tripletlab.index.embedding_index import EmbeddingIndex


class Matches(NamedTuple):
    """What `EmbeddingIndex.match` found: labels (Q,) (-1: unknown), the nearest item's
    distances (Q,) and ids (Q,), and the threshold used."""

    labels: np.ndarray
    distances: np.ndarray
    ids: np.ndarray
    threshold: float


def match(
    index: EmbeddingIndex, vectors: np.ndarray, threshold: float | None, precision: float
) -> Matches:
    """See `EmbeddingIndex.match`."""
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"a distance threshold is a finite number >= 0, got {threshold}")
    if threshold is None:
        if index.calibration is None:
            raise ValueError(
                "the index is not calibrated: run tripletlab index calibrate INDEX_DIR, "
                "or give a distance threshold"
            )
        threshold = index.calibration.threshold_for(precision)
    distances, ids = index.search(vectors, k=1)
    labels = np.where(distances[:, 0] <= threshold, index.labels_of(ids[:, 0]), -1)
    return Matches(labels, distances[:, 0], ids[:, 0], float(threshold))


def search_other_classes(
    index: EmbeddingIndex, vectors: np.ndarray, labels: np.ndarray, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Like `EmbeddingIndex.search`, but each query only among the items whose label differs
    from its own `labels[i]` (FAISS id selectors): what a query of a class the gallery lacks
    finds.

    Args:
        vectors: (Q, D); labels: (Q,) index labels (-1: exclude nothing).
    """
    f, x = faiss(), index._prepare(vectors)
    labels = np.asarray(labels, dtype=np.int64)
    distances = np.full((len(x), k), np.inf, dtype=np.float32)
    ids = np.full((len(x), k), -1, dtype=np.int64)
    if len(index) == 0:
        return distances, ids
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        own = index.items.ids[index.items.labels == label]
        selector = f.IDSelectorNot(f.IDSelectorBatch(own))
        params = search_params(index.settings, selector)
        raw, found = index._index.search(x[rows], k, params=params)
        distances[rows], ids[rows] = index._to_distance(raw), found
    distances[ids < 0] = np.inf
    return index._ties_in_order(distances, ids)
