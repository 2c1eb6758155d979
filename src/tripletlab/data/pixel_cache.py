"""Decoded images on disk, memory-mapped: data sets larger than memory.

A folder's decode is one raw uint8 file `images.u8` (N x H x W[x C], row-major) beside
`labels.npy`, `sources.npy` and `meta.json` (shape, count, class names, skipped files, the
SHA-256 of each file), written as a whole folder (`atomic_folder`) while the images are
decoded, so that at no time do all of them sit in memory. Reading maps `images.u8`
copy-on-write (`np.memmap` mode "c": an ordinary writable array whose pages come from the OS
page cache as they are touched; a write stays private). Subsets of a mapped array
(`take_rows`: the train / validation / test parts) are copied, in chunks, into unlinked
temporary files in the cache folder and mapped too, so splitting never loads the whole set.
No pickle anywhere (`np.load(allow_pickle=False)`). A cache is replaced, never rewritten in
place (a file cut short under a live mapping would kill the process reading it with SIGBUS):
do not edit `images.u8` while a run uses it; a damaged one is found by its size and checksum
when the next run opens it, and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.utils.io import cache_dir, sha256_file
from tripletlab.utils.pages import release_pages

VERSION = 1
IMAGES, LABELS, SOURCES, META = "images.u8", "labels.npy", "sources.npy", "meta.json"
# Subsets above this many bytes are mapped from a temporary file, smaller ones held in memory.
MAPPED_SUBSET_BYTES = 64 << 20
_CHUNK_BYTES = 64 << 20


class PixelWriter:
    """Appends uint8 images of one shape to `folder/images.u8`, hashing as it goes."""

    def __init__(self, folder: Path, shape: tuple[int, ...]) -> None:
        self.folder, self.shape = Path(folder), tuple(shape)
        self.handle = open(self.folder / IMAGES, "wb")  # noqa: SIM115 (closed by finish)
        self.digest = hashlib.sha256()
        self.count = 0

    def append(self, image: np.ndarray) -> None:
        """One image of `shape`, uint8."""
        data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
        self.handle.write(data)
        self.digest.update(data)
        self.count += 1

    def finish(self, labels: np.ndarray, class_names: list[str], sources: np.ndarray,
               skipped: int) -> None:  # fmt: skip
        """Close the pixels and write labels (N,), sources (N,) and the metadata."""
        self.handle.close()
        np.save(self.folder / LABELS, labels.astype(np.int64), allow_pickle=False)
        np.save(self.folder / SOURCES, sources.astype(str), allow_pickle=False)
        meta = {"version": VERSION, "count": self.count, "shape": list(self.shape),
                "class_names": class_names, "skipped": skipped,
                "sha256": {IMAGES: self.digest.hexdigest(),
                           LABELS: sha256_file(self.folder / LABELS),
                           SOURCES: sha256_file(self.folder / SOURCES)}}  # fmt: skip
        (self.folder / META).write_text(json.dumps(meta))


def read_pixels(folder: Path, verify: bool = True) -> dict[str, Any]:
    """A decode written by `PixelWriter`: images (N, *shape) mapped, labels, sources,
    class_names, skipped. `verify` checks every file's SHA-256 first (read in chunks: the
    pixels do not stay in this process's memory).

    Raises:
        ValueError: a missing, damaged or altered file (the message names it).
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
        count, shape = int(meta["count"]), tuple(int(side) for side in meta["shape"])
        if meta.get("version") != VERSION or count < 0 or len(shape) not in (2, 3):
            raise ValueError("unknown version or shape")
        expected = count * int(np.prod(shape))
        if (folder / IMAGES).stat().st_size != expected:
            raise ValueError(f"{IMAGES} is not {expected:,} bytes")
        if verify:
            for name, digest in meta["sha256"].items():
                if name not in (IMAGES, LABELS, SOURCES) or sha256_file(folder / name) != digest:
                    raise ValueError(f"{name} does not match its checksum")
        labels = np.load(folder / LABELS, allow_pickle=False)
        sources = np.load(folder / SOURCES, allow_pickle=False)
        if labels.shape != (count,) or sources.shape != (count,):
            raise ValueError("labels or sources do not match the image count")
    except (OSError, KeyError, TypeError, ValueError) as error:  # JSON errors are ValueErrors
        raise ValueError(f"{folder} is damaged: {error}") from None
    images = (np.memmap(folder / IMAGES, dtype=np.uint8, mode="c", shape=(count, *shape))
              if count else np.zeros((0, *shape), dtype=np.uint8))  # fmt: skip
    return {"images": images, "labels": labels, "sources": sources,
            "class_names": [str(name) for name in meta["class_names"]],
            "skipped": int(meta["skipped"])}  # fmt: skip


def take_rows(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`images[indices]`; for a memory-mapped `images` and a large result, a new array mapped
    from an unlinked temporary file in the cache folder (gone when the array is), filled in
    chunks whose pages are released as they are written, so memory stays bounded."""
    indices = np.asarray(indices)
    row_bytes = int(np.prod(images.shape[1:])) * images.itemsize
    if not isinstance(images, np.memmap) or len(indices) * row_bytes <= MAPPED_SUBSET_BYTES:
        return images[indices]
    folder = cache_dir() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as handle:  # the mapping keeps it alive
        out = np.memmap(handle, dtype=images.dtype, mode="w+",
                        shape=(len(indices), *images.shape[1:]))  # fmt: skip
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(indices), step):
        out[start : start + step] = images[indices[start : start + step]]
        release_pages(images)
        release_pages(out)
    return out
