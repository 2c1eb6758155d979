"""Similarity search over a gallery of embeddings: `EmbeddingIndex` on FAISS (exact, HNSW,
IVF-PQ), saved with its items and a manifest; calibrated thresholds and matching ("unknown"
when the nearest item is too far); and `nearest`, the project's one k-NN helper (evaluation,
report grids and offline triplet mining search through it).

FAISS is imported on first use only, in `tripletlab.index._faiss`.
"""

from tripletlab.index.calibration import (
    DEFAULT_PRECISIONS,
    UNKNOWN,
    Calibration,
    Threshold,
    calibrate,
    check_targets,
)
from tripletlab.index.embedding_index import MAX_K, EmbeddingIndex
from tripletlab.index.kinds import KINDS, IndexKind, IndexSettings, default_nlist, default_pq_m
from tripletlab.index.knn import nearest, nearest_in_parts
from tripletlab.index.matching import Matches, search_other_classes
from tripletlab.index.storage import (
    MANIFEST,
    check_destination,
    check_files,
    check_fits,
    check_model,
    read_manifest,
    write_calibration,
)

__all__ = [
    "DEFAULT_PRECISIONS",
    "KINDS",
    "MANIFEST",
    "MAX_K",
    "UNKNOWN",
    "Calibration",
    "EmbeddingIndex",
    "IndexKind",
    "IndexSettings",
    "Matches",
    "Threshold",
    "calibrate",
    "check_destination",
    "check_files",
    "check_fits",
    "check_model",
    "check_targets",
    "default_nlist",
    "default_pq_m",
    "nearest",
    "nearest_in_parts",
    "read_manifest",
    "search_other_classes",
    "write_calibration",
]
