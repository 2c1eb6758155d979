"""The four-array data sets of the MNIST family (MNIST, Fashion-MNIST): IDX files, their
checks, and the verified uint8 `.npz` cache they are kept in.

Arrays are uint8 `x_train` (N, 28, 28), `y_train` (N,), `x_test`, `y_test`. The cache file has
a JSON record beside it with its own SHA-256 (checked on every load) and the SHA-256 of the
arrays (`arrays_sha256`), which is what identifies the data whatever the compression.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np

from tripletlab.data.images import ImageSet
from tripletlab.utils.io import atomic_write_bytes

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KEYS = ("x_train", "y_train", "x_test", "y_test")


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the four arrays' uint8 bytes, in the order x_train, y_train, x_test, y_test."""
    digest = hashlib.sha256()
    for key in KEYS:
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def check_arrays(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """The four arrays as uint8, checked: (N, 28, 28) images with N labels in 0..9.

    Raises:
        ValueError: a missing array, a wrong shape or a label out of range (names `origin`).
    """
    for key in KEYS:
        if key not in arrays:
            raise ValueError(f"{origin}: missing array {key!r}; expected {', '.join(KEYS)}")
    out = {}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(
                f"{origin}: {split} images must be (N, 28, 28) with N labels, "
                f"got {images.shape} and {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{origin}: {split} labels must lie in 0..9")
        out[f"x_{split}"] = images.astype(np.uint8, copy=False)
        out[f"y_{split}"] = labels.astype(np.uint8)
    return out


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a uint8 array of its shape.

    Raises:
        ValueError: not an unsigned-byte IDX file, truncated, or a damaged gzip stream.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:  # gzip's errors for a damaged or cut stream
        raise ValueError(f"{path}: unreadable ({error})") from None
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} values for shape {shape})")
    return body.reshape(shape)


def find_idx(directory: Path, stem: str) -> Path:
    """The IDX file `stem` in `directory`, gzipped or not, with `-idx` or `.idx` in its name.

    Raises:
        FileNotFoundError: none of them.
    """
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"),
                 f"{stem.replace('-idx', '.idx')}.gz"):  # fmt: skip
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {stem} (or {stem}.gz) IDX file")


def read_idx_folder(directory: Path) -> dict[str, np.ndarray]:
    """The four arrays from a folder of IDX files (unchecked; see `check_arrays`)."""
    return {key: read_idx(find_idx(directory, stem)) for key, stem in IDX_FILES.items()}


def write_cache(path: Path, arrays: dict[str, np.ndarray], source: str) -> Path:
    """Save the four arrays as `path` (.npz) with its JSON record (source, SHA-256 of the
    arrays and of the file), both atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    record = {"source": source, "arrays_sha256": arrays_sha256(arrays)}
    record["file_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return path


def read_cache(
    path: Path, splits: tuple[str, ...], prefix: str, class_names: list[str]
) -> dict[str, ImageSet]:
    """The splits ("train", "test") of a cache written by `write_cache`, as image sets with
    int64 labels, `class_names` and sources `<prefix>:<split>:<i>` (read without pickle).

    Raises:
        ValueError: an unknown split.
    """
    for split in splits:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; expected train or test")
    found = {}
    with np.load(path, allow_pickle=False) as npz:
        for split in splits:
            labels = npz[f"y_{split}"].astype(np.int64)
            sources = np.char.add(f"{prefix}:{split}:", np.arange(len(labels)).astype(str))
            found[split] = ImageSet(npz[f"x_{split}"], labels, list(class_names), sources)
    return found
