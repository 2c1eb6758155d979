"""Search and match images against a run's index: `Searcher`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tripletlab.models.engines import select_engine
from tripletlab.runs import RunDir
from tripletlab.search.build import open_index
from tripletlab.search.sources import read_image, read_images


@dataclass(frozen=True)
class Hit:
    """One neighbour of a query."""

    rank: int
    id: int
    label: str
    distance: float
    source: str


@dataclass(frozen=True)
class Verdict:
    """A match: the nearest item's label, or "unknown" beyond the threshold."""

    label: str
    distance: float
    threshold: float
    nearest: Hit | None  # None: the index is empty


class Searcher:
    """A run's model and its index, ready to embed, search and match images.

    Args:
        run_dir: the run whose best checkpoint embeds the queries.
        index_dir: default `RUN_DIR/index/`.
        force: use an index made by another model.
        engine: "torch", or "onnx" (the run's `model.onnx` in ONNX Runtime).
    """

    def __init__(
        self,
        run_dir: str | Path,
        index_dir: str | Path | None = None,
        force: bool = False,
        engine: str = "torch",
    ) -> None:
        run = RunDir.open(run_dir)
        self.index_dir = Path(index_dir) if index_dir else run.index
        self.index, self.embedder = open_index(self.index_dir, run, force)
        self.engine = select_engine(self.embedder, run.path, engine)  # type: ignore[arg-type]
        self.size, self.channels = self.embedder.config.image_size, self.embedder.config.channels

    def embed_input(self, reference: str) -> np.ndarray:
        """One image (a path or `mnist:<split>:<i>`) as the model takes it: uint8 (H, W[, C])."""
        return read_image(reference, self.size, self.channels)

    def embed(self, references: list[str]) -> np.ndarray:
        """Images (paths or `mnist:<split>:<i>`) -> embeddings (N, D)."""
        return self.engine.embed(read_images(references, self.size, self.channels))

    def search(self, references: list[str], k: int = 10) -> list[list[Hit]]:
        """The k nearest gallery items of each image, nearest first."""
        distances, ids = self.index.search(self.embed(references), k)
        return [self._hits(d, i) for d, i in zip(distances, ids, strict=True)]

    def _hits(self, distances: np.ndarray, ids: np.ndarray) -> list[Hit]:
        found = ids >= 0
        ids, distances = ids[found], distances[found]
        labels, sources = self.index.labels_of(ids), self.index.sources_of(ids)
        rows = zip(ids, labels, distances, sources, strict=True)
        return [Hit(rank + 1, int(i), self.index.label_name(int(y)), float(d), s)
                for rank, (i, y, d, s) in enumerate(rows)]  # fmt: skip

    def match(
        self, references: list[str], precision: float = 0.99, threshold: float | None = None
    ) -> list[Verdict]:
        """The nearest item's label, or "unknown" when it is farther than the threshold (the
        calibrated one of `precision` unless `threshold` is given)."""
        matches = self.index.match(self.embed(references), threshold, precision)
        verdicts = []
        for label, distance, item in zip(
            matches.labels, matches.distances, matches.ids, strict=True
        ):
            hits = self._hits(np.array([distance]), np.array([item]))
            verdicts.append(Verdict(self.index.label_name(int(label)), float(distance),
                                    matches.threshold, hits[0] if hits else None))  # fmt: skip
        return verdicts

    def item_image(self, source: str) -> np.ndarray | None:
        """The stored image of an item from its source, None where it cannot be read."""
        try:
            return read_image(source, self.size, self.channels) if source else None
        except (ValueError, OSError):
            return None
