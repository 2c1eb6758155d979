from __future__ import annotations

import logging

import numpy as np
import pytest
from torch import nn

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.data import ImageSet, load_mnist
from tripletlab.data.datasets import RunData
from tripletlab.evaluation import evaluate_embedder
from tripletlab.models import registry


def test_full_metrics_and_a_test_set_without_different_pairs(caplog):
    mnist = load_mnist("test")
    train = mnist.subset(np.arange(200))
    embedder = Embedder()
    metrics = evaluate_embedder(
        embedder, RunData(train, train.subset(np.arange(0)), mnist.subset(np.arange(200, 400)))
    )
    assert {"precision_at_1", "map_at_r", "knn_accuracy", "per_class", "verification"} <= set(
        metrics
    )
    ones = mnist.subset(np.flatnonzero(mnist.labels == 1)[:20])
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_embedder(embedder, RunData(train, train.subset(np.arange(0)), ones))
    assert metrics["precision_at_1"] == 1.0 and "verification" not in metrics
    assert "verification skipped" in caplog.text


@pytest.fixture
def pixel_embedder(monkeypatch):
    """An Embedder whose embedding is its two pixels / 255: images place points by hand."""
    monkeypatch.setitem(registry._REGISTRY, "test_pixels", lambda channels, size: nn.Flatten())
    config = ModelConfig(backbone="test_pixels", head=False, normalize=False, image_size=(1, 2))
    return Embedder(config)


def _points(coordinates, labels) -> ImageSet:
    pixels = np.array(coordinates, dtype=np.uint8).reshape(-1, 1, 2)
    return ImageSet(pixels, np.array(labels), ["zero", "one"])


def test_exact_values_on_a_hand_checked_case(pixel_embedder, monkeypatch):
    """Test points on the corners of a square of side 0.2 (51 / 255), each class on one
    diagonal: A (0, 0) and C (.2, .2) class 0, B (.2, 0) and D (0, .2) class 1.

    Retrieval: every query's two nearest (at 0.2) are of the other class, its own item is at
    0.283: Precision@1, R-Precision and MAP@R are 0. Per class: each anchor's positive is the
    opposite corner (d^2 = 0.08), each negative an adjacent one (0.04): diff = 0.04 always,
    acc 0. Verification: the 2 same pairs (0.283) are all farther than the 4 different pairs
    (0.2): ROC AUC 0; the best balanced accuracy 0.5 accepts everything (threshold 0.283); no
    threshold keeps FAR <= 1e-3 above TAR 0. 1-NN against a reference of (0, 0) class 0 and
    (.2, .24) class 1: A -> 0 right; C -> (.2, .24) wrong; B at 0.2 from (0, 0) against 0.24:
    wrong; D at 0.2 against 0.204: wrong. Accuracy 1 / 4."""
    test = _points([[0, 0], [51, 0], [51, 51], [0, 51]], [0, 1, 0, 1])
    train = _points([[0, 0], [51, 61]], [0, 1])
    # The 1-NN gallery embedded and searched one image at a time, as 1,000,000 are in chunks.
    monkeypatch.setattr("tripletlab.evaluation.evaluate.GALLERY_CHUNK", 1)
    metrics = evaluate_embedder(pixel_embedder, RunData(train, train.subset(np.arange(0)), test))
    assert (metrics["precision_at_1"], metrics["r_precision"], metrics["map_at_r"]) == (0, 0, 0)
    assert metrics["num_test"] == 4 and metrics["knn_accuracy"] == 0.25
    for row in metrics["per_class"]:
        assert row["triplets"] == 2 and row["acc"] == 0.0
        for key in ("min", "max", "mean"):
            assert row[key] == pytest.approx(0.04, abs=1e-6)
    assert [row["name"] for row in metrics["per_class"]] == ["zero", "one"]
    verification = metrics["verification"]
    assert verification["roc_auc"] == 0.0 and verification["accuracy"] == 0.5
    assert verification["threshold"] == pytest.approx(0.08**0.5, abs=1e-6)
    assert verification["tar_at_far"] == 0.0
    assert (verification["num_same"], verification["num_different"]) == (2, 4)
    # Moving C next to A makes class 0's queries right: A and C each find the other first.
    test = _points([[0, 0], [51, 0], [0, 2], [0, 51]], [0, 1, 0, 1])
    metrics = evaluate_embedder(pixel_embedder, RunData(train, train.subset(np.arange(0)), test))
    assert metrics["precision_at_1"] == 0.5 and metrics["map_at_r"] == 0.5


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0])
def test_throughput_refuses_a_time_it_could_never_reach(seconds):
    from tripletlab.evaluation import measure_throughput

    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        measure_throughput(Embedder(), np.zeros((4, 28, 28), dtype=np.uint8), 2, seconds)


def test_num_test_counts_every_test_image_and_num_queries_those_with_a_match(pixel_embedder):
    """A class with one test image is no retrieval query, but it is a test image."""
    test = _points([[0, 0], [51, 0], [51, 51], [0, 51], [200, 200]], [0, 1, 0, 1, 2])
    train = _points([[0, 0], [51, 61], [200, 190]], [0, 1, 2])
    metrics = evaluate_embedder(pixel_embedder, RunData(train, train.subset(np.arange(0)), test))
    assert (metrics["num_test"], metrics["num_queries"]) == (5, 4)
