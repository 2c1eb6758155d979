"""Fashion-MNIST offline, from Debian's `dataset-fashion-mnist` package (or any folder with
its four IDX files): 60,000 training and 10,000 test images of 28 x 28 grey clothes in ten
classes, cached once as a verified uint8 `.npz` like MNIST.

Debian recompressed the upstream `.gz` files, so the check is over the decompressed arrays:
their SHA-256 must be `ARRAYS_SHA256` (measured on the package's files), else the data is
refused unless `allow_other` (a user's own variant of the data set).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tripletlab.data.idx import (
    arrays_sha256,
    check_arrays,
    read_cache,
    read_idx_folder,
    write_cache,
)
from tripletlab.data.images import ImageSet
from tripletlab.utils.io import cache_dir, verified_file

log = logging.getLogger(__name__)

NAME = "fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # `dpkg -L dataset-fashion-mnist`
CACHE_FILE = "fashion-mnist.npz"
# SHA-256 over x_train, y_train, x_test, y_test (uint8, in that order), decompressed from
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 (upstream's files, recompressed).
ARRAYS_SHA256 = "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


def fashion_cache_path(cache: Path | None = None) -> Path:
    """Where the prepared Fashion-MNIST lives (`$TRIPLETLAB_CACHE/fashion-mnist.npz`)."""
    return (cache or cache_dir()) / CACHE_FILE


def prepare_fashion_mnist(
    source: Path | None = None,
    *,
    cache: Path | None = None,
    force: bool = False,
    allow_other: bool = False,
) -> Path:
    """Build the verified uint8 Fashion-MNIST cache, once; fast when it is there already.

    Args:
        source: a folder with the four IDX files (gzipped or not); by default Debian's
            `/usr/share/datasets/fashion-mnist`.
        cache: the cache folder (default: `$TRIPLETLAB_CACHE` or `~/.cache/tripletlab`).
        force: rebuild even if a valid cache exists.
        allow_other: accept arrays whose checksum is not the published data's.
    Returns:
        Path of the `.npz` cache.
    Raises:
        FileNotFoundError: no source (the message says how to install Debian's package).
        ValueError: damaged or tampered files.
    """
    path = fashion_cache_path(cache)
    if not force and source is None and verified_file(path):
        return path
    folder = Path(source) if source is not None else DEBIAN_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {folder}: install Debian's package "
            f"(`apt-get install {DEBIAN_PACKAGE}`; `dpkg -L {DEBIAN_PACKAGE}` lists its files), "
            "or give `tripletlab data prepare fashion-mnist --source DIR` a folder with "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz"
        )
    arrays = check_arrays(read_idx_folder(folder), str(folder))
    digest = arrays_sha256(arrays)
    if digest != ARRAYS_SHA256:
        if not allow_other:
            raise ValueError(
                f"{folder}: the Fashion-MNIST arrays' checksum is {digest[:16]}..., expected "
                f"{ARRAYS_SHA256[:16]}...: the files are damaged or not Fashion-MNIST "
                "(--allow-other accepts a variant of your own)"
            )
        log.warning("%s: not the published Fashion-MNIST (sha256 %s...)", folder, digest[:12])
    return write_cache(path, arrays, str(folder))


def load_fashion_mnist_splits(
    splits: tuple[str, ...] = ("train", "test"), *, cache: Path | None = None
) -> dict[str, ImageSet]:
    """Fashion-MNIST splits ("train": 60,000, "test": 10,000) with class names and sources
    `fashion-mnist:<split>:<i>`, preparing the cache if needed."""
    return read_cache(prepare_fashion_mnist(cache=cache), splits, NAME, CLASS_NAMES)


def load_fashion_mnist(split: str = "train", *, cache: Path | None = None) -> ImageSet:
    """One Fashion-MNIST split; see `load_fashion_mnist_splits`."""
    return load_fashion_mnist_splits((split,), cache=cache)[split]
