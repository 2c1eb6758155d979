from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tripletlab.evaluation import pair_distances, verification_metrics


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_equals_scikit_learn(ties):
    rng = np.random.default_rng(1)
    same = rng.random(3000) < 0.2
    distances = rng.normal(loc=np.where(same, 0.8, 1.3), scale=0.3)
    if ties:
        distances = np.round(distances, 1)
    metrics = verification_metrics(distances, same)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)
    # TAR at FAR from scikit-learn's ROC curve: the best TPR with FPR <= 1e-3.
    fpr, tpr, _ = roc_curve(same, -distances)
    assert metrics["tar_at_far"] == pytest.approx(tpr[fpr <= 1e-3].max())
    assert (metrics["num_same"], metrics["num_different"]) == (same.sum(), (~same).sum())


def test_threshold_and_accuracy_on_a_separable_case():
    distances = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 1.1])
    same = np.array([True, True, True, False, False, False])
    metrics = verification_metrics(distances, same)
    assert metrics["accuracy"] == 1.0 and metrics["threshold"] == 0.3
    assert metrics["roc_auc"] == 1.0 and metrics["tar_at_far"] == 1.0


def test_pair_distances_exact_for_small_sets_and_sampled_for_large():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 40)
    distances, same = pair_distances(x, labels)
    assert len(distances) == 40 * 39 // 2
    i, j = np.triu_indices(40, k=1)
    expected = np.linalg.norm(x[i] - x[j], axis=1)
    np.testing.assert_allclose(np.sort(distances), np.sort(expected), rtol=1e-4)
    assert same.sum() == sum((labels[a] == labels[b]) for a, b in zip(i, j, strict=True))
    sampled, _ = pair_distances(x, labels, max_pairs=100)
    assert 0 < len(sampled) <= 100


def test_one_kind_of_pair_only_is_an_error():
    with pytest.raises(ValueError, match="both"):
        verification_metrics(np.array([0.1, 0.2]), np.array([True, True]))


def test_the_order_of_the_pairs_does_not_change_the_metrics():
    """Ties are decided together, so any order of equal distances gives the same numbers."""
    rng = np.random.default_rng(3)
    same = rng.random(20_000) < 0.3
    distances = np.round(rng.normal(loc=np.where(same, 0.8, 1.3), scale=0.3), 2)
    expected = verification_metrics(distances, same)
    for _ in range(3):
        order = rng.permutation(len(same))
        assert verification_metrics(distances[order], same[order]) == expected


def test_sampled_pairs_keep_the_drawn_pairs_and_their_exact_distances():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 300)
    distances, same = pair_distances(x, labels, max_pairs=5_000, seed=7)
    draw = np.random.default_rng(7).integers(0, 300, (2, 5_000))
    first, second = draw[:, draw[0] != draw[1]]
    expected = np.linalg.norm(x[first] - x[second], axis=1)
    # The same pairs as drawn (as a multiset), each with its own distance and flag.
    flags = labels[first] == labels[second]
    got, want = np.lexsort((distances, same)), np.lexsort((expected, flags))
    np.testing.assert_allclose(distances[got], expected[want], rtol=1e-5, atol=1e-6)
    assert np.array_equal(same[got], flags[want])
