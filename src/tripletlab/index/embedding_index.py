"""`EmbeddingIndex`: a FAISS index over a gallery of embeddings, with an id, a label and a
source per item, searched in the run's own distance.

Kinds (FAISS factory names in brackets):
- `exact` [IDMap2,Flat]: brute force, exact; inner product for L2-normalized embeddings,
  squared L2 otherwise. Add and remove.
- `hnsw` [IDMap,HNSW<M>]: a graph, approximate, fast; `hnsw_m` links per node, `ef_search`
  candidates per query. Add only: FAISS's HNSW cannot delete.
- `ivf-pq` [IVF<nlist>,PQ<m>x<nbits>]: vectors compressed to `pq_m` bytes in `nlist` lists,
  `nprobe` lists searched: galleries too large for float32 in memory. Trained on a sample
  (`train`, or the first `add`); add and remove.

Distances come back as the loss measures them: `L2`, `squared-L2` or `angular` (1 - cos).
Normalized embeddings are stored for inner product, from which all three follow; others
for squared L2 (L2 and squared-L2), or, for `angular`, normalized first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tripletlab.config import DISTANCES
from tripletlab.index._faiss import faiss
from tripletlab.index.calibration import Calibration
from tripletlab.index.items import Items

if TYPE_CHECKING:
    from tripletlab.index.matching import Matches
from tripletlab.index.kinds import (
    IndexSettings,
    apply_search_settings,
    make_faiss_index,
    resolve_ivf_pq,
)

# The most neighbours a search returns per query.
MAX_K = 100_000
# Queries per FAISS call: bounds the (queries x k) results and FAISS's own work buffers.
SEARCH_BATCH = 16384
# Unit vectors may be off by float32 rounding; more than this is not a normalized embedding.
_NORM_TOLERANCE = 1e-3


class EmbeddingIndex:
    """A searchable gallery of (N, D) float32 embeddings with ids, labels and sources."""

    def __init__(
        self,
        dim: int,
        distance: str = "L2",
        normalized: bool = True,
        settings: IndexSettings | None = None,
        class_names: list[str] | None = None,
        model_sha256: str | None = None,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"embedding dimension must be >= 1, got {dim}")
        if distance not in DISTANCES:
            raise ValueError(
                f"unknown distance {distance!r}; expected one of {', '.join(DISTANCES)}"
            )
        self.dim, self.distance, self.normalized = dim, distance, bool(normalized)
        self.settings = settings or IndexSettings()
        self.class_names = list(class_names or [])
        self.model_sha256 = model_sha256
        self.built_from: dict[str, str] = {}  # e.g. the run and the gallery it was built from
        self.calibration: Calibration | None = None
        self.items = Items()
        self.next_id = 0
        # Unit vectors (given, or made so for `angular`) are compared by inner product.
        self.inner_product = self.normalized or distance == "angular"
        ivf = self.settings.kind == "ivf-pq"  # made when trained
        self._index = None if ivf else make_faiss_index(self.settings, dim, self.inner_product)

    @property
    def is_trained(self) -> bool:
        """False for an IVF-PQ index before `train` (or its first `add`)."""
        return self._index is not None and bool(self._index.is_trained)

    def train(self, sample: np.ndarray, gallery_size: int | None = None) -> None:
        """Train an IVF-PQ index on a sample of the gallery (other kinds need no training).

        Args:
            sample: (S, D) embeddings, drawn from the gallery; at least 39 per list (FAISS's
                minimum) and 39 per PQ centroid (2^nbits).
            gallery_size: the gallery's expected size, which sets the default `nlist`.
        Raises:
            ValueError: too small a sample, or an index that holds items already.
        """
        if self.settings.kind != "ivf-pq":
            return
        if len(self.items):
            raise ValueError("an IVF-PQ index is trained before any item is added")
        sample = self._prepare(sample)
        self.settings = resolve_ivf_pq(self.settings, self.dim, len(sample), gallery_size)
        self._index = make_faiss_index(self.settings, self.dim, self.inner_product)
        self._index.train(sample)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) as contiguous float32, checked finite, unit length where stored so."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings (N, {self.dim}), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or Inf")
        if self.distance == "angular" and not self.normalized:
            x = x.copy()
            faiss().normalize_L2(x)
        elif self.normalized and len(x):
            norms = np.linalg.norm(x, axis=1)
            if np.abs(norms - 1).max() > _NORM_TOLERANCE:
                raise ValueError(
                    "embeddings are not L2-normalized (norms from "
                    f"{norms.min():.4g} to {norms.max():.4g}); make the index with "
                    "normalized=False for a model that does not normalize"
                )
        return x

    def add(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        sources: list[str] | np.ndarray | None = None,
        ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Store vectors with their labels (and sources); returns their ids (N,) int64.

        Ids are given, unique and not stored yet, or numbered on from the largest so far.
        Raises:
            ValueError: shapes that disagree, NaN, unnormalized vectors for a normalized
                index, ids that are negative, repeated or stored already.
        """
        x = self._prepare(vectors)
        labels = np.asarray(labels)
        if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"expected ({len(x)},) integer labels, got {labels.dtype} {labels.shape}"
            )
        if (labels < 0).any():  # -1 stands for "no item" and "unknown"
            raise ValueError("labels must be >= 0")
        sources = [""] * len(x) if sources is None else [str(s) for s in sources]
        if len(sources) != len(x):
            raise ValueError(f"expected {len(x)} sources, got {len(sources)}")
        if ids is None:
            ids = np.arange(self.next_id, self.next_id + len(x), dtype=np.int64)
        else:
            ids = np.asarray(ids, dtype=np.int64)
            if ids.shape != (len(x),) or (ids < 0).any() or len(np.unique(ids)) != len(ids):
                raise ValueError("ids must be (N,) distinct non-negative integers")
            taken = ids[self.items.rows(ids) >= 0]
            if len(taken):
                raise ValueError(f"ids already stored: {taken[:10].tolist()}")
        if len(x) == 0:
            return ids
        if self._index is None:  # an untrained IVF-PQ index: train on what comes first
            self.train(x)
        self._index.add_with_ids(x, ids)
        self.items.append(ids, labels, sources)
        self.next_id = max(self.next_id, int(ids.max()) + 1)
        return ids

    def remove(self, ids: np.ndarray) -> int:
        """Remove items by id; returns how many were removed.

        Raises:
            ValueError: an HNSW index (it cannot delete), or ids that are not stored.
        """
        if self.settings.kind == "hnsw":
            raise ValueError(
                "an HNSW index cannot remove items (FAISS's HNSW graph has no deletion): "
                "build it again without them, or use --kind exact or ivf-pq"
            )
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        missing = ids[self.items.rows(ids) < 0]
        if len(missing):
            raise ValueError(f"no item with id {', '.join(map(str, missing[:10].tolist()))}")
        if len(ids) == 0:
            return 0
        removed = int(self._index.remove_ids(ids))
        self.items.remove(ids)
        return removed

    # -- searching -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def set_search(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change how hard HNSW (`ef_search`) or IVF-PQ (`nprobe`) searches."""
        self.settings = replace(self.settings, ef_search=ef_search or self.settings.ef_search,
                                nprobe=nprobe or self.settings.nprobe)  # fmt: skip
        if self._index is not None:
            apply_search_settings(self._index, self.settings)

    def search(
        self, vectors: np.ndarray, k: int = 10, batch_size: int = SEARCH_BATCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored items of each query, nearest first.

        Args:
            vectors: (Q, D) query embeddings.
            k: neighbours per query (>= 1); where fewer items are stored, the rest of a row
                is id -1 at distance inf.
        Returns:
            distances (Q, k) float32 in the index's distance, and ids (Q, k) int64; equal
            distances within a row in the order the items were added.
        """
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be a whole number from 1 to {MAX_K:,}, got {k}")
        x = self._prepare(vectors)
        distances = np.full((len(x), k), np.inf, dtype=np.float32)
        ids = np.full((len(x), k), -1, dtype=np.int64)
        searched = min(k, len(self))  # FAISS pads the rest; no need to make it
        if searched == 0:
            return distances, ids
        for start in range(0, len(x), batch_size):
            raw, found = self._index.search(x[start : start + batch_size], searched)
            distances[start : start + len(found), :searched] = self._to_distance(raw)
            ids[start : start + len(found), :searched] = found
        distances[ids < 0] = np.inf
        return self._ties_in_order(distances, ids)

    def _ties_in_order(
        self, distances: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows sorted by distance, equal distances in the order the items were added (FAISS
        orders ties by heap, differently for inner product and L2)."""
        rows = self.items.rows(ids)
        order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), distances), axis=1)
        return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)

    def _to_distance(self, raw: np.ndarray) -> np.ndarray:
        """FAISS's scores (inner products, or squared L2) -> the index's distance."""
        if self.inner_product:
            if self.distance == "angular":
                return np.maximum(1 - raw, 0)
            raw = np.maximum(2 - 2 * raw, 0)  # squared L2 of unit vectors
        squared = np.maximum(raw, 0)
        return squared if self.distance == "squared-L2" else np.sqrt(squared)

    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        """Labels of `ids` (any shape), -1 where there is no item."""
        rows = self.items.rows(ids)
        if len(self.items) == 0:
            return np.full(rows.shape, -1, dtype=np.int64)
        return np.where(rows >= 0, self.items.labels[rows.clip(0)], -1)

    def sources_of(self, ids: np.ndarray) -> list[str]:
        """Sources of a 1-d array of ids ("" where none or no item)."""
        return [self.items.source(int(r)) if r >= 0 else "" for r in self.items.rows(ids)]

    def names_with(self, names: Iterable[str]) -> list[str]:
        """The class names with `names` appended where new. Stored labels without a name
        first get their number as name, so that a new name never takes a stored label."""
        known = list(self.class_names)
        if len(self.items):
            known += [str(i) for i in range(len(known), int(self.items.labels.max()) + 1)]
        known += [name for name in dict.fromkeys(names) if name not in known]
        return known

    def label_name(self, label: int) -> str:
        """The class name of a label (the number itself when the index has no names)."""
        if label < 0:
            return "unknown"
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def match(
        self, vectors: np.ndarray, threshold: float | None = None, precision: float = 0.99
    ) -> Matches:
        """The nearest item's label for each query, or -1 (unknown) when it lies farther than
        `threshold`, by default the calibrated threshold of `precision`.

        Raises:
            ValueError: no threshold given and the index is not calibrated for `precision`.
        """
        from tripletlab.index.matching import match

        return match(self, vectors, threshold, precision)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the index folder atomically (see `tripletlab.index.storage`)."""
        from tripletlab.index.storage import save_index

        return save_index(self, Path(directory))

    @classmethod
    def load(
        cls, directory: str | Path, model_sha256: str | None = None, force: bool = False
    ) -> EmbeddingIndex:
        """Read an index folder, refusing one made by another model than `model_sha256`
        (the SHA-256 of its weights) unless `force`; see `tripletlab.index.storage`."""
        from tripletlab.index.storage import load_index

        return load_index(Path(directory), model_sha256, force)
