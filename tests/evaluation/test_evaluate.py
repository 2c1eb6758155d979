from __future__ import annotations

import logging

import numpy as np

from tripletlab import Embedder
from tripletlab.data import load_mnist
from tripletlab.data.datasets import RunData
from tripletlab.evaluation import evaluate_embedder


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
