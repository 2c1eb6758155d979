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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import Progress

from tripletlab.data.images import ImageSet
from tripletlab.utils.io import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

# Refuse images above this many pixels before decoding them (a decompression bomb).
MAX_PIXELS = 50_000_000


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


def decode_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one file to uint8 (H, W) or (H, W, 3), resized to `size` (height, width).

    Raises:
        ValueError: empty, unreadable, truncated or too large.
    """
    data = Path(path).read_bytes()
    if not data:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ValueError(f"{width} x {height} pixels is more than {MAX_PIXELS:,}")
                image = image.convert("L" if channels == 1 else "RGB")
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # fmt: skip
        raise ValueError(str(error) or type(error).__name__) from error


def _cache_key(scan: FolderScan, size: tuple[int, int], channels: int) -> str:
    digest = hashlib.sha256(json.dumps([list(size), channels]).encode())
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
        cache: reuse / write the decoded arrays in the cache folder.
    Returns:
        The `ImageSet` (classes with no usable image are dropped) and the number of skipped files.
    Raises:
        ValueError: fewer than two classes with usable images.
    """
    check_channels(channels)
    scan = scan_folder(root)
    cache_file = cache_dir() / "folders" / f"{_cache_key(scan, size, channels)}.npz"
    if cache and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as npz:
            names = [str(n) for n in npz["class_names"]]
            return ImageSet(npz["images"], npz["labels"], names), int(npz["skipped"])
    images, labels, skipped = [], [], 0
    with Progress(transient=True) as progress:
        task = progress.add_task(f"decoding {root}", total=len(scan.files))
        for path, label in zip(scan.files, scan.labels, strict=True):
            try:
                images.append(decode_image(path, size, channels))
                labels.append(label)
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
    )
    if cache:
        buffer = io.BytesIO()
        np.savez(buffer, images=result.images, labels=result.labels,
                 class_names=np.array(result.class_names), skipped=skipped)  # fmt: skip
        atomic_write_bytes(cache_file, buffer.getvalue())
    return result, skipped
