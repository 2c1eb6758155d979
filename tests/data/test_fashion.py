"""Fashion-MNIST from Debian's package: the IDX layout, the arrays' checksum, a tampered or
truncated file, the cache, and the data set by name in a run."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.config import RunConfig, merge
from tripletlab.data import load_run_data
from tripletlab.data.fashion import (
    CLASS_NAMES,
    DEBIAN_FOLDER,
    fashion_cache_path,
    load_fashion_mnist_splits,
    prepare_fashion_mnist,
)
from tripletlab.data.idx import IDX_FILES, read_idx

pytestmark = pytest.mark.skipif(
    not DEBIAN_FOLDER.is_dir(), reason="apt-get install dataset-fashion-mnist (.ci/run does)"
)


def test_the_debian_files_load_with_their_checksum_and_class_names(tmp_path):
    path = prepare_fashion_mnist(cache=tmp_path)
    assert path == fashion_cache_path(tmp_path)
    splits = load_fashion_mnist_splits(cache=tmp_path)
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.class_names[9] == "Ankle boot" and train.labels[0] == 9  # upstream's first
    assert test.sources[7] == "fashion-mnist:test:7"
    assert prepare_fashion_mnist(cache=tmp_path) == path  # cached: no second read


def _copy(tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(DEBIAN_FOLDER, folder)
    return folder


def test_a_tampered_label_is_refused_unless_allowed(tmp_path):
    folder = _copy(tmp_path)
    labels = folder / f"{IDX_FILES['y_test']}.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[8 + 5] = (data[8 + 5] + 1) % 10  # one test label changed
    labels.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match=r"checksum is .* the files are damaged or not Fashion"):
        prepare_fashion_mnist(folder, cache=tmp_path / "cache")
    assert not fashion_cache_path(tmp_path / "cache").exists()
    prepare_fashion_mnist(folder, cache=tmp_path / "cache", allow_other=True)
    assert fashion_cache_path(tmp_path / "cache").is_file()


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    folder = _copy(tmp_path)
    images = folder / f"{IDX_FILES['x_train']}.gz"
    images.write_bytes(images.read_bytes()[:5000])  # a cut gzip stream
    with pytest.raises(ValueError, match="unreadable"):
        prepare_fashion_mnist(folder, cache=tmp_path / "cache")
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"x"))
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(images)
    images.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"abcd"))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):  # float IDX
        read_idx(images)


def test_a_missing_package_says_how_to_install_it(tmp_path):
    result = CliRunner().invoke(app, ["data", "prepare", "fashion-mnist", "--source",
                                      str(tmp_path / "none")])  # fmt: skip
    assert result.exit_code == 1 and "apt-get install dataset-fashion-mnist" in result.output


def test_fashion_mnist_by_name_in_a_run(tmp_path):
    config = merge(RunConfig(), {"data": {"dataset": "fashion-mnist", "limit": 500}})
    data = load_run_data(config.data)
    assert len(data.train) == 450 and len(data.test) == 10000
    assert data.test.class_names == CLASS_NAMES
