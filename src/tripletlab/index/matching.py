"""Match queries: the nearest item's label, or unknown beyond a distance threshold."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

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
