"""Image folders: one sub-folder per class (cats vs dogs style), any format Pillow reads.

Files that cannot be used (corrupt, truncated, empty, not an image, absurdly large) are skipped
with one warning line each and a count at the end. Decoded images are cached as uint8 `.npz`
under the cache folder, keyed by the file list and the decoding settings, so later runs and
epochs never decode again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from tripletlab.data.images import ImageSet, decode_image
from tripletlab.utils.io import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderScan:
    """The files of an image folder and their classes, in a fixed order."""

    files: list[Path]
    labels: np.ndarray
    class_names: list[str]


def scan_folder(root: Path) -> FolderScan:
    """List `root/<class>/<file>`; classes and files sorted by name; hidden entries ignored.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: no class sub-folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: expected one sub-folder per class, found none")
    files, labels = [], []
    for index, folder in enumerate(classes):
        members = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        files += members
        labels += [index] * len(members)
    return FolderScan(files, np.array(labels, dtype=np.int64), [p.name for p in classes])


def _cache_key(scan: FolderScan, size: tuple[int, int], channels: int) -> str:
    # "sources": caches since each image keeps its resolved path (older ones are decoded again).
    digest = hashlib.sha256(json.dumps([list(size), channels, "sources"]).encode())
    for path in scan.files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def check_channels(channels: int) -> None:
    """Refuse a channel count other than 1 (grey) or 3 (RGB), the two a folder is read as."""
    if channels not in (1, 3):
        raise ValueError(
            f"images of a folder are read as 1 (grey) or 3 (RGB) channels, not {channels}"
        )


def load_folder(
    root: Path, size: tuple[int, int] = (28, 28), channels: int = 1, cache: bool = True
) -> tuple[ImageSet, int]:
    """Decode an image folder into memory.

    Args:
        root: folder with one sub-folder per class.
        size: (height, width) every image is resized to.
        channels: 1 (grey) or 3 (RGB).
        cache: reuse / write the decoded arrays in the cache folder (verified by a checksum;
            a damaged cache is decoded again, a read-only one only read).
    Returns:
        The `ImageSet` (classes with no usable image are dropped) and the number of skipped files.
    Raises:
        ValueError: fewer than two classes with usable images.
    """
    check_channels(channels)
    scan = scan_folder(root)
    cache_file = cache_dir() / "folders" / f"{_cache_key(scan, size, channels)}.npz"
    cached = _read_cache(cache_file) if cache else None
    if cached is not None:
        images, skipped = cached
        if skipped:
            log.warning("%d of %d files in %s were skipped when they were first decoded "
                        "(cached)", skipped, len(scan.files), root)  # fmt: skip
        return images, skipped
    result, skipped = _decode_all(scan, root, size, channels)
    if cache:
        _write_cache(cache_file, result, skipped)
    return result, skipped


def _decode_all(
    scan: FolderScan, root: Path, size: tuple[int, int], channels: int
) -> tuple[ImageSet, int]:
    images, labels, kept, skipped = [], [], [], 0
    with Progress(transient=True) as progress:
        task = progress.add_task(f"decoding {root}", total=len(scan.files))
        for path, label in zip(scan.files, scan.labels, strict=True):
            try:
                images.append(decode_image(path, size, channels))
                labels.append(label)
                kept.append(str(path.resolve()))
            except (ValueError, OSError) as error:
                skipped += 1
                log.warning("skipping %s: %s", path, error)
            progress.advance(task)
    if skipped:
        log.warning("skipped %d of %d files in %s", skipped, len(scan.files), root)
    used = sorted(set(labels))
    for index, name in enumerate(scan.class_names):
        if index not in used:
            log.warning("class %r has no usable image; it is left out", name)
    if len(used) < 2:
        raise ValueError(f"{root}: need at least two classes with usable images, found {len(used)}")
    remap = {old: new for new, old in enumerate(used)}
    shape = (0, *size) if channels == 1 else (0, *size, 3)
    result = ImageSet(
        np.stack(images) if images else np.zeros(shape, dtype=np.uint8),
        np.array([remap[y] for y in labels], dtype=np.int64),
        [scan.class_names[i] for i in used],
        np.array(kept, dtype=str) if kept else np.zeros(0, dtype=str),
    )
    return result, skipped


def _read_cache(cache_file: Path) -> tuple[ImageSet, int] | None:
    """The cached decode, if present and its checksum (sidecar `.json`) holds; else None, with
    a warning when a cache exists but is damaged or altered."""
    sidecar = cache_file.with_suffix(".json")
    if not cache_file.is_file():
        return None
    try:
        blob = cache_file.read_bytes()
        expected = json.loads(sidecar.read_text()).get("file_sha256")
        if hashlib.sha256(blob).hexdigest() != expected:
            raise ValueError("checksum mismatch")
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            names = [str(n) for n in npz["class_names"]]
            # Caches written before sources were kept have none.
            sources = npz["sources"] if "sources" in npz.files else None
            images = ImageSet(npz["images"], npz["labels"], names, sources)
            return images, int(npz["skipped"])
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile) as error:
        log.warning("folder cache %s is damaged (%s); decoding the images again", cache_file,
                    error)  # fmt: skip
        return None


def _write_cache(cache_file: Path, images: ImageSet, skipped: int) -> None:
    """Write the decode and its checksum; a cache that cannot be written is only a warning."""
    buffer = io.BytesIO()
    np.savez(buffer, images=images.images, labels=images.labels,
             class_names=np.array(images.class_names), skipped=skipped,
             **({} if images.sources is None else {"sources": images.sources}))  # fmt: skip
    blob = buffer.getvalue()
    sidecar = {"file_sha256": hashlib.sha256(blob).hexdigest()}
    try:
        atomic_write_bytes(cache_file, blob)
        atomic_write_bytes(cache_file.with_suffix(".json"), json.dumps(sidecar).encode())
    except OSError as error:
        log.warning("cannot write the folder cache %s (%s); the images will be decoded again "
                    "next time", cache_file, error)  # fmt: skip
