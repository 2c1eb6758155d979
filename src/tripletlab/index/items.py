"""The items table of an index: an int64 id, a label and an optional source per stored vector.

Held as NumPy arrays (sources as one UTF-8 byte string with offsets; a file name's bytes that
are not UTF-8 are kept as they are), so ten million items take about 200 MB plus their
sources, and saved as `.npz` read with `allow_pickle=False`.
Added chunks are kept as a list and joined when first read, so a build that adds a million
items in chunks copies them once, not once per chunk.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


class Items:
    """ids (N,) int64, labels (N,) int64 and sources (N,) str ("" for none), in index order."""

    def __init__(self) -> None:
        self._chunks: list[tuple[np.ndarray, np.ndarray, list[str]]] = []
        self._ids = np.zeros(0, dtype=np.int64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._blob = np.zeros(0, dtype=np.uint8)
        self._offsets = np.zeros(1, dtype=np.int64)
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (ids sorted, their rows)

    def __len__(self) -> int:
        return len(self._ids) + sum(len(ids) for ids, _, _ in self._chunks)

    def append(self, ids: np.ndarray, labels: np.ndarray, sources: list[str]) -> None:
        """Add items at the end. ids and labels (n,), sources n strings."""
        self._chunks.append((ids.astype(np.int64), labels.astype(np.int64), sources))
        self._sorted = None

    def _join(self) -> None:
        if not self._chunks:
            return
        encoded = [_encode(s) for _, _, sources in self._chunks for s in sources]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        new_blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)])
        self._blob = np.concatenate([self._blob, new_blob])
        self._ids = np.concatenate([self._ids, *(ids for ids, _, _ in self._chunks)])
        self._labels = np.concatenate([self._labels, *(labels for _, labels, _ in self._chunks)])
        self._chunks = []

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 ids in index order."""
        self._join()
        return self._ids

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 labels in index order."""
        self._join()
        return self._labels

    def source(self, row: int) -> str:
        """The source of the item in row `row` ("" when it has none)."""
        self._join()
        return bytes(self._blob[self._offsets[row] : self._offsets[row + 1]]).decode(
            "utf-8", "surrogateescape"
        )

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `ids` (any shape), -1 where an id is not stored (or is -1)."""
        self._join()
        if self._sorted is None:
            order = np.argsort(self._ids, kind="stable")
            self._sorted = (self._ids[order], order)
        sorted_ids, order = self._sorted
        ids = np.asarray(ids, dtype=np.int64)
        if len(sorted_ids) == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        where = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
        found = sorted_ids[where] == ids
        return np.where(found, order[where], -1)

    def remove(self, ids: np.ndarray) -> None:
        """Drop the items with these ids (all of them must be stored)."""
        rows = self.rows(ids)
        keep = np.ones(len(self._ids), dtype=bool)
        keep[rows] = False
        lengths = np.diff(self._offsets)
        self._blob = self._blob[np.repeat(keep, lengths)]  # the kept sources' bytes
        self._offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
        self._ids, self._labels = self._ids[keep], self._labels[keep]
        self._sorted = None

    def save(self, path: Path) -> None:
        """Write the table as an uncompressed `.npz` of plain arrays."""
        self._join()
        with open(path, "wb") as handle:
            np.savez(handle, ids=self._ids, labels=self._labels, sources=self._blob,
                     source_offsets=self._offsets)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> Items:
        """Read a table written by `save`, without pickle.

        Raises:
            ValueError: not such a table (arrays missing, of the wrong type or inconsistent).
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("ids", "labels", "sources", "source_offsets")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable items table ({error})") from None
        items = cls()
        items._ids, items._labels = arrays["ids"], arrays["labels"]
        items._blob, items._offsets = arrays["sources"], arrays["source_offsets"]
        n = len(items._ids)
        consistent = (
            items._ids.dtype == np.int64 and items._labels.dtype == np.int64
            and items._blob.dtype == np.uint8 and items._offsets.dtype == np.int64
            and items._ids.shape == (n,) and items._labels.shape == (n,)
            and items._offsets.shape == (n + 1,) and n == len(np.unique(items._ids))
            and items._offsets[0] == 0 and items._offsets[-1] == len(items._blob)
            and bool(np.all(np.diff(items._offsets) >= 0))
        )  # fmt: skip
        if not consistent:
            raise ValueError(f"{path} is damaged: its arrays do not form an items table")
        return items


def _encode(source: str) -> bytes:
    """UTF-8, with a file name's undecodable bytes (`os.fsdecode`'s surrogates) kept as they
    were, so that the path reads back as the same file."""
    return source.encode("utf-8", "surrogateescape")
