"""Images named by a path or a source reference (`mnist:<split>:<i>`), read at a model's input
size; and a folder of images read in chunks, so a gallery of any size streams through memory."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np

from tripletlab.data import TITLES, load_fashion_mnist, load_image_file, load_mnist
from tripletlab.data.folder import scan_folder
from tripletlab.data.images import decode_image

log = logging.getLogger(__name__)

_NAMED_DATA = r"^(mnist|fashion-mnist):"  # the data sets an image reference can name
_NAMED_REF = re.compile(_NAMED_DATA + r"(train|test):(\d+)$")
_NAMED_PREFIX = re.compile(_NAMED_DATA)


def read_image(reference: str | Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (H, W) or (H, W, 3) at `size`: a file, or `mnist:train:123`
    (`fashion-mnist:test:7` too).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unreadable image, or an MNIST reference out of range or for a model
            that does not take 28 x 28 grey images; the message names the reference.
    """
    match = _NAMED_REF.match(str(reference))
    if match is None:
        if _NAMED_PREFIX.match(str(reference)) and not Path(reference).exists():
            raise ValueError(
                f"{reference}: a data set's image is named like mnist:test:7 or "
                "fashion-mnist:train:0 (split train or test, index from 0)"
            )
        return load_image_file(Path(reference), size, channels)
    name, split, position = match.group(1), match.group(2), int(match.group(3))
    if tuple(size) != (28, 28) or channels != 1:
        raise ValueError(f"{reference}: {TITLES[name]} images are 28 x 28 grey; this model "
                         f"takes {size[0]} x {size[1]} with {channels} channels")  # fmt: skip
    images = _named_images(name, split)
    if position >= len(images):
        raise ValueError(f"{reference}: {TITLES[name]} {split} has {len(images)} images")
    return images[position]


@cache
def _named_images(name: str, split: str) -> np.ndarray:
    """A named data set's split, read once per process (a grid reads dozens of images)."""
    return (load_mnist(split) if name == "mnist" else load_fashion_mnist(split)).images


def read_images(references: list[str], size: tuple[int, int], channels: int) -> np.ndarray:
    """`read_image` of each reference, stacked: (N, H, W[, C]) uint8."""
    if not references:
        raise ValueError("no images given")
    return np.stack([read_image(reference, size, channels) for reference in references])


def image_files(paths: list[Path]) -> tuple[list[Path], list[str | None]]:
    """Files named directly, and those of folders: a folder with class sub-folders gives its
    files with their class (the sub-folder's name), any other folder its image files with
    no class. Returns (files, class name of each or None)."""
    files: list[Path] = []
    classes: list[str | None] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
            classes.append(None)
        elif path.is_dir() and any(
            p.is_dir() and not p.name.startswith(".") for p in path.iterdir()
        ):
            scan = scan_folder(path)
            files += scan.files
            classes += [scan.class_names[label] for label in scan.labels]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            files += found
            classes += [None] * len(found)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files, classes


def decoded_chunks(
    files: list[Path], size: tuple[int, int], channels: int, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Decode files `chunk` at a time: yields (images (n, H, W[, C]) uint8, positions (n,) of
    the decoded files in `files`, files skipped in this chunk). Unusable files are skipped
    with a warning naming them."""
    for start in range(0, len(files), chunk):
        images, positions, skipped = [], [], 0
        for position in range(start, min(start + chunk, len(files))):
            try:
                images.append(decode_image(files[position], size, channels))
                positions.append(position)
            except (ValueError, OSError) as error:
                skipped += 1
                log.warning("skipping %s: %s", files[position], error)
        stacked = np.stack(images) if images else np.zeros((0, *size), dtype=np.uint8)
        yield stacked, np.array(positions, dtype=np.int64), skipped
