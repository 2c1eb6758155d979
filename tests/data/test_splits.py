from __future__ import annotations

import numpy as np
import pytest

from tripletlab.config import DataConfig
from tripletlab.data.datasets import load_run_data
from tripletlab.data.splits import parse_split, stratified_split


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("train", 100), ("train[:40%]", 40), ("train[40%:50%]", 10), ("train[-10%:]", 10),
     ("train[10:25]", 15), ("test[:]", 100)],
)  # fmt: skip
def test_spec_sizes(spec, expected):
    assert len(parse_split(spec).indices(100, seed=0)) == expected


def test_specs_are_deterministic_and_complementary():
    parts = [parse_split(s).indices(50, seed=7) for s in ("train[:60%]", "train[60%:]")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(50))
    np.testing.assert_array_equal(parse_split("train[:60%]").indices(50, 7), parts[0])
    assert not np.array_equal(parse_split("train[:60%]").indices(50, 8), parts[0])


@pytest.mark.parametrize("class_size", [3, 5, 15, 17])
@pytest.mark.parametrize("specs", [("train[:90%]", "train[-10%:]"),
                                   ("train[:66.7%]", "train[-33.3%:]")])  # fmt: skip
def test_a_negative_percent_cuts_where_its_complement_does(specs, class_size):
    """train[:90%] and train[-10%:] of every class size (per class, halves rounded alike):
    disjoint and complete, never a whole class in the small part."""
    labels = np.repeat(np.arange(3), class_size)
    head, tail = (parse_split(s).indices(len(labels), 0, labels) for s in specs)
    assert np.intersect1d(head, tail).size == 0
    assert sorted([*head.tolist(), *tail.tolist()]) == list(range(len(labels)))
    assert len(tail) < len(head)


@pytest.mark.parametrize(
    "spec", ["train[:40]%", "train[a:b]", "train[:40%", "[:10%]", "train[:120%]"]
)
def test_bad_specs(spec):
    with pytest.raises(ValueError):
        parse_split(spec).indices(10, 0)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    train, val, test = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert np.bincount(labels[train]).tolist() == [80, 40, 8]
    assert np.bincount(labels[val]).tolist() == [10, 5, 1]
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(val) + len(test) == 160


@pytest.mark.parametrize("class_size", [5, 15, 25])
def test_shares_summing_to_a_round_share_cut_where_it_does(class_size):
    """0.7 + 0.2 is 0.8999999999999999 in floats: the last tenth is still the same images."""
    labels = np.repeat([0, 1], class_size)
    expected = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)[2]
    for shares in [(0.7, 0.2, 0.1), (0.9, 0.0, 0.1), (0.6, 0.3, 0.1)]:
        np.testing.assert_array_equal(stratified_split(labels, shares, seed=0)[2], expected)


def test_mnist_with_classes_and_per_class():
    config = DataConfig(classes=(5, 6, 7, 8, 9), per_class=50, val_fraction=0.0)
    data = load_run_data(config, seed=0)
    assert np.bincount(data.train.labels, minlength=10).tolist() == [0] * 5 + [50] * 5
    assert set(np.unique(data.test.labels)) == {5, 6, 7, 8, 9}
    with pytest.raises(ValueError, match="28 x 28 grey"):
        load_run_data(DataConfig(), 0, size=(32, 32), channels=1)


def test_a_test_split_alone_cuts_mnists_own_test_split():
    """`data.test_split` alone on MNIST: the usual training and validation parts, a stratified
    part of the 10,000 test images (quicker evaluations)."""
    default = load_run_data(DataConfig(limit=500))
    part = load_run_data(DataConfig(limit=500, test_split="test[:20%]"))
    for mine, theirs in ((part.train, default.train), (part.val, default.val)):
        assert np.array_equal(mine.images, theirs.images)
        assert np.array_equal(mine.labels, theirs.labels)
    assert len(part.test) == 2_000
    counts, full = np.bincount(part.test.labels), np.bincount(default.test.labels)
    assert np.all(np.abs(counts - 0.2 * full) <= 0.5)  # 20% of each class
    # Each chosen image is a test image with its label (rows of the full test set).
    full_test, test = default.test, part.test
    rows = {x.tobytes(): y for x, y in zip(full_test.images, full_test.labels, strict=True)}
    assert all(rows[x.tobytes()] == y for x, y in zip(test.images, test.labels, strict=True))
    # The training split is where the other parts come from: cutting it alone would overlap.
    with pytest.raises(ValueError, match="together"):
        load_run_data(DataConfig(limit=500, test_split="train[90%:]"))
