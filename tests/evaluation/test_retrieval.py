from __future__ import annotations

import numpy as np
import pytest

import tripletlab.evaluation.retrieval as retrieval
from tripletlab.evaluation import knn_accuracy, retrieval_metrics


def test_hand_worked_example():
    # Points on a line; class a = {0, 1, 5}, class b = {2, 3}.
    embeddings = np.array([[0.0], [1.0], [10.0], [11.0], [3.0]])
    labels = np.array([0, 0, 1, 1, 0])
    # Query 0 (a, R=2): neighbours 1(a) 3.0->idx4(a) -> hits 1,1: P@1 1, RP 1, AP 1.
    # Query 1 (a, R=2): neighbours 0(a), 4(a) -> 1, 1, 1.
    # Query 2 (b, R=1): neighbour 3(b) -> 1, 1, 1.
    # Query 3 (b, R=1): neighbour 2(b) -> 1, 1, 1.
    # Query 4 (a, R=2): neighbours 1 (d=2, a), 0 (d=3, a) -> 1, 1, 1.
    metrics = retrieval_metrics(embeddings, labels)
    assert metrics == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0, "num_queries": 5}


def test_hand_worked_example_with_mistakes():
    # Class a = {0, 2, 4}, class b = {1, 3}; positions on a line.
    embeddings = np.array([[0.0], [1.0], [2.5], [3.6], [10.0]])
    labels = np.array([0, 1, 0, 1, 0])
    # q0 a R=2: order 1(b) 2(a) -> hits [0,1]: P@1 0, RP 1/2, AP (0 + 1/2)/2 = 0.25
    # q1 b R=1: order 0(a) d=1 vs 2(a) d=1.5 -> [0]: 0, 0, 0
    # q2 a R=2: order 3(b) d=1.1, 1(b) d=1.5 -> [0,0]: 0, 0, 0
    # q3 b R=1: order 2(a) d=1.1 -> [0]: 0, 0, 0
    # q4 a R=2: order 3(b) d=6.4, 2(a) d=7.5 -> [0,1]: 0, 1/2, 0.25
    metrics = retrieval_metrics(embeddings, labels)
    assert metrics["precision_at_1"] == 0.0
    assert metrics["r_precision"] == pytest.approx((0.5 + 0.5) / 5)
    assert metrics["map_at_r"] == pytest.approx((0.25 + 0.25) / 5)


def _brute_force(embeddings, labels):
    dist = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    p1, rp, mapr, count = [], [], [], 0
    for q in range(len(labels)):
        r = int(np.sum(labels == labels[q])) - 1
        if r == 0:
            continue
        count += 1
        order = [i for i in np.argsort(dist[q], kind="stable") if i != q][:r]
        hits = (labels[order] == labels[q]).astype(float)
        p1.append(hits[0])
        rp.append(hits.sum() / r)
        mapr.append(np.sum(np.cumsum(hits) / np.arange(1, r + 1) * hits) / r)
    return np.mean(p1), np.mean(rp), np.mean(mapr), count


def test_chunked_metrics_equal_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    labels[0] = 99  # a singleton class: not a query
    embeddings = rng.normal(size=(300, 8)) + labels[:, None] % 3
    monkeypatch.setattr(retrieval, "_BLOCK_ELEMENTS", 300 * 7)  # many small blocks
    metrics = retrieval_metrics(embeddings, labels)
    p1, rp, mapr, count = _brute_force(embeddings, labels)
    assert metrics["num_queries"] == count == 299
    assert metrics["precision_at_1"] == pytest.approx(p1)
    assert metrics["r_precision"] == pytest.approx(rp)
    assert metrics["map_at_r"] == pytest.approx(mapr)


def test_knn_accuracy_against_reference_set():
    reference = np.array([[0.0, 0.0], [10.0, 0.0]])
    queries = np.array([[1.0, 0.0], [9.0, 0.0], [6.0, 0.0]])
    assert knn_accuracy(queries, np.array([0, 1, 0]), reference, np.array([0, 1])) == 2 / 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="two or more"):
        retrieval_metrics(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan], [0.0]]), np.array([0, 0]))
