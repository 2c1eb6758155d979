"""Image folders: one sub-folder per class (cats vs dogs style), any format Pillow reads.

Files that cannot be used (corrupt, truncated, empty, not an image, absurdly large) are skipped
with one warning line each and a count at the end. Decoded images are cached under the cache
folder as one memory-mapped uint8 file (`tripletlab.data.pixel_cache`), keyed by the file list
and the decoding settings, so later runs and epochs never decode again and a folder larger
than memory trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tripletlab.data.images import ImageSet, decode_image
from tripletlab.data.pixel_cache import PixelWriter, read_pixels
from tripletlab.utils.io import atomic_folder, cache_dir, shown_name
from tripletlab.utils.progress import progress_bar

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
    names = [shown_name(p.name) for p in classes]  # a class name is shown, never opened
    return FolderScan(files, np.array(labels, dtype=np.int64), names)


def _cache_key(scan: FolderScan, size: tuple[int, int], channels: int) -> str:
    # "mapped": the memory-mapped cache (older `.npz` caches are decoded again).
    digest = hashlib.sha256(json.dumps([list(size), channels, "sources", "mapped"]).encode())
    for path in scan.files:
        stat = path.stat()
        digest.update(os.fsencode(path) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
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
    """Decode an image folder, into the cache folder (memory-mapped: larger than memory works)
    or, without `cache`, into memory.

    Args:
        root: folder with one sub-folder per class.
        size: (height, width) every image is resized to.
        channels: 1 (grey) or 3 (RGB).
        cache: reuse / write the decode in the cache folder, as a memory-mapped file
            (`tripletlab.data.pixel_cache`; verified by checksums: a damaged cache is decoded
            again; where it cannot be written, the images are decoded into memory).
    Returns:
        The `ImageSet` (classes with no usable image are dropped) and the number of skipped files.
    Raises:
        ValueError: fewer than two classes with usable images.
    """
    check_channels(channels)
    scan = scan_folder(root)
    cached = cache_dir() / "folders" / _cache_key(scan, size, channels)
    if cache and cached.is_dir():
        try:
            images, skipped = _image_set(read_pixels(cached))
            if skipped:
                log.warning("%d of %d files in %s were skipped when they were first decoded "
                            "(cached)", skipped, len(scan.files), root)  # fmt: skip
            return images, skipped
        except ValueError as error:
            log.warning("folder cache %s; decoding the images again", error)
    if cache:
        try:
            with atomic_folder(cached) as temp:
                writer = PixelWriter(temp, _shape(size, channels))
                try:
                    writer.finish(*_decode_all(scan, root, size, channels, writer.append))
                finally:
                    writer.close()
            return _image_set(read_pixels(cached, verify=False))
        except OSError as error:
            log.warning("cannot write the folder cache %s (%s); decoding into memory, and "
                        "again next time", cached, error)  # fmt: skip
    decoded: list[np.ndarray] = []
    labels, names, sources, skipped = _decode_all(scan, root, size, channels, decoded.append)
    shape = (0, *_shape(size, channels))
    pixels = np.stack(decoded) if decoded else np.zeros(shape, dtype=np.uint8)
    return ImageSet(pixels, labels, names, sources), skipped


def _shape(size: tuple[int, int], channels: int) -> tuple[int, ...]:
    return tuple(size) if channels == 1 else (*size, 3)


def _image_set(stored: dict) -> tuple[ImageSet, int]:
    sources = stored["sources"] if len(stored["sources"]) else None
    images = ImageSet(stored["images"], stored["labels"], stored["class_names"], sources)
    return images, stored["skipped"]


def _decode_all(
    scan: FolderScan, root: Path, size: tuple[int, int], channels: int,
    keep: Callable[[np.ndarray], None],
) -> tuple[np.ndarray, list[str], np.ndarray, int]:  # fmt: skip
    """Decode every file, giving each usable image to `keep` in order; returns their labels
    (N,) (renumbered over the classes that kept images), those classes' names, the images'
    sources (N,) and the number of files skipped.

    Raises:
        ValueError: fewer than two classes with usable images.
    """
    labels, kept, skipped = [], [], 0
    with progress_bar() as progress:
        task = progress.add_task(f"decoding {root}", total=len(scan.files))
        for path, label in zip(scan.files, scan.labels, strict=True):
            try:
                keep(decode_image(path, size, channels))
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
    sources = np.array(kept, dtype=str) if kept else np.zeros(0, dtype=str)
    names = [scan.class_names[i] for i in used]
    return np.array([remap[y] for y in labels], dtype=np.int64), names, sources, skipped
