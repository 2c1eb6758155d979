"""Decoded images on disk, memory-mapped: data sets larger than memory.

A folder's decode is one raw uint8 file `images.u8` (N x H x W[x C], row-major) beside
`labels.npy`, `sources.npy` and `meta.json` (shape, count, class names, skipped files, the
SHA-256 of each file), written as a whole folder (`atomic_folder`) while the images are
decoded, so that at no time do all of them sit in memory. Reading maps `images.u8`
copy-on-write (`np.memmap` mode "c": an ordinary writable array whose pages come from the OS
page cache as they are touched; a write stays private). Subsets of a mapped array
(`take_rows`: the train / validation / test parts) are copied, in chunks, into files beside
it and mapped too, so splitting never loads the whole set.
No pickle anywhere (`np.load(allow_pickle=False)`). A cache is replaced, never rewritten in
place (a file cut short under a live mapping would kill the process reading it with SIGBUS):
do not edit `images.u8` while a run uses it; a damaged one is found by its size and checksum
when the next run opens it, and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

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

    def close(self) -> None:
        """Close the pixel file (`finish` does; call it when decoding fails)."""
        self.handle.close()

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
            for name in (IMAGES, LABELS, SOURCES):
                if sha256_file(folder / name) != meta["sha256"][name]:
                    raise ValueError(f"{name} does not match its checksum")
        labels = np.load(folder / LABELS, allow_pickle=False)
        sources = np.load(folder / SOURCES, allow_pickle=False)
        if labels.shape != (count,) or sources.shape != (count,):
            raise ValueError("labels or sources do not match the image count")
    except (OSError, KeyError, TypeError, ValueError) as error:  # JSON errors are ValueErrors
        raise ValueError(f"{folder} is damaged: {error}") from None
    images = _mapped(folder / IMAGES, (count, *shape))
    return {"images": images, "labels": labels, "sources": sources,
            "class_names": [str(name) for name in meta["class_names"]],
            "skipped": int(meta["skipped"])}  # fmt: skip


def _mapped(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 file `path` as an array of `shape`, mapped copy-on-write, told that reads
    are random (no read-ahead: a batch of scattered images maps only their pages)."""
    if not shape[0]:
        return np.zeros(shape, dtype=np.uint8)
    array = np.memmap(path, dtype=np.uint8, mode="c", shape=shape)
    if hasattr(mmap, "MADV_RANDOM"):
        array._mmap.madvise(mmap.MADV_RANDOM)
    return array


def take_rows(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`images[indices]`; for a large result from a memory-mapped file, a mapped file too.

    The subset is written, in chunks whose pages are released as they go (memory stays
    bounded), beside the file it comes from as `subset-<key>.u8` (the key: that file and the
    indices), so that the ranks of a distributed run and later runs with the same split share
    it; where that folder cannot be written, into an unlinked temporary file in the cache
    folder (gone with the array). Small results are held in memory.
    """
    indices = np.asarray(indices)
    shape = (len(indices), *images.shape[1:])
    size = int(np.prod(shape)) * images.itemsize
    if not isinstance(images, np.memmap) or size <= MAPPED_SUBSET_BYTES:
        return images[indices]
    source = Path(images.filename) if images.filename else None
    if source is not None and images.dtype == np.uint8:
        digest = hashlib.sha256(f"{source}:{images.offset}:{images.shape}".encode())
        digest.update(indices.astype(np.int64).tobytes())
        target = source.parent / f"subset-{digest.hexdigest()[:24]}.u8"
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            if not (target.is_file() and target.stat().st_size == size):
                with open(temp, "w+b") as handle:
                    handle.truncate(size)
                    _fill(np.memmap(handle, dtype=np.uint8, mode="r+", shape=shape), images,
                          indices)  # fmt: skip
                os.replace(temp, target)
            return _mapped(target, shape)
        except OSError:  # a read-only cache: an unlinked file of this process's own
            pass
        finally:
            temp.unlink(missing_ok=True)
    folder = cache_dir() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as handle:  # the mapping keeps it alive
        out = np.memmap(handle, dtype=images.dtype, mode="w+", shape=shape)
    _fill(out, images, indices)
    return out


def _fill(out: np.memmap, images: np.ndarray, indices: np.ndarray) -> None:
    """out[i] = images[indices[i]], in chunks, releasing both maps' pages as it goes."""
    row_bytes = int(np.prod(images.shape[1:])) * images.itemsize
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(indices), step):
        out[start : start + step] = images[indices[start : start + step]]
        release_pages(images)
        release_pages(out)
    out.flush()


class RowReader:
    """The rows of a memory-mapped uint8 array, read from its file with `os.preadv` instead of
    through the map: `reader[indices]` -> a uint8 tensor (B, *row shape).

    Training reads scattered rows; through a map, the kernel maps whole page-cache folios
    around each one (measured: 1.5 GB resident after a few hundred batches of 64 images of
    12 KB, released every 64 steps), while a read copies only the rows, so the process's
    resident memory stays at what it uses.
    """

    def __init__(self, array: np.memmap) -> None:
        if array.filename is None or array.dtype != np.uint8:
            raise ValueError("RowReader reads uint8 arrays mapped from a named file")
        self.shape = tuple(array.shape)
        self.start = int(array.offset)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.handle = open(array.filename, "rb", buffering=0)  # noqa: SIM115 (lives with it)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_RANDOM)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices: Any) -> torch.Tensor:
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        flat, handle = out.reshape(len(rows), -1), self.handle.fileno()
        for position, row in enumerate(rows.tolist()):
            if not 0 <= row < self.shape[0]:
                raise IndexError(f"row {row} of {self.shape[0]}")
            if os.preadv(handle, [flat[position]], self.start + row * self.row_bytes) != len(
                flat[position]
            ):
                raise ValueError(f"{self.handle.name} is shorter than its {self.shape[0]} rows")
        return torch.from_numpy(out)

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.close()


def training_rows(images: np.ndarray) -> Any:
    """What training indexes for batches of `images`: a `RowReader` for a uint8 array mapped
    from a named file, else the array as a tensor (shared memory). Either gives a tensor
    (B, ...) for a tensor of B indices."""
    if isinstance(images, np.memmap) and images.filename is not None and images.dtype == np.uint8:
        return RowReader(images)
    return torch.from_numpy(images)
