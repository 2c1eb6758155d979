from __future__ import annotations

import numpy as np
import pytest

from tripletlab.evaluation import class_triplets, format_per_class, per_class_report


def test_triplets_follow_the_rules():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    triplets = class_triplets(labels, seed=5)
    anchors, positives, negatives = triplets.T
    # Every item of a class with a second item is an anchor exactly once; class 3 has none.
    assert sorted(anchors.tolist()) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert np.all(anchors != positives)
    assert np.all(labels[anchors] == labels[positives])
    assert np.all(labels[anchors] != labels[negatives])
    np.testing.assert_array_equal(triplets, class_triplets(labels, seed=5))


def test_known_answers_on_a_hand_made_set():
    # Class 0 at x = 0 and 1; class 1 at x = 10 and 12 (1-D embeddings).
    embeddings = np.array([[0.0], [1.0], [10.0], [12.0]])
    labels = np.array([0, 0, 1, 1])
    rows = per_class_report(embeddings, labels, class_names=["zero", "one"])
    # Two items per class: the positive is forced; negatives are random, so enumerate them.
    by_class = {row["name"]: row for row in rows}
    zero = by_class["zero"]
    # Anchor 0: d(a,p)^2 = 1, d(a,n)^2 in {100, 144}; anchor 1: 1 - {81, 121}.
    assert zero["triplets"] == 2 and zero["acc"] == 1.0
    assert zero["max"] <= 1 - 81 and zero["min"] >= 1 - 144
    one = by_class["one"]
    # Anchor 10: 4 - {100, 81}; anchor 12: 4 - {144, 121}.
    assert one["max"] <= 4 - 81 and one["min"] >= 4 - 144 and one["acc"] == 1.0


def test_a_confused_class_has_low_accuracy():
    # Class 1 sits on top of class 0, class 2 far away: anchors of 0 often meet a negative of 1
    # as close as their positive.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 200)
    embeddings = rng.normal(size=(600, 2))
    embeddings[labels == 2] += 100.0
    rows = {row["class"]: row for row in per_class_report(embeddings, labels)}
    assert rows[2]["acc"] == 1.0
    # Half the negatives of class 0 are class 1 (same place): those are coin flips.
    assert rows[0]["acc"] == pytest.approx(0.75, abs=0.07)
    text = format_per_class(list(rows.values()))
    assert "class 2 (200 test triplets)" in text and "acc: 1.0000" in text


def test_a_collapsed_embedding_scores_zero_not_one():
    """All embeddings equal: every diff is exactly 0, which is no success (acc counts diff < 0
    only). Counting ties as successes would give a collapsed model a perfect 1.0."""
    labels = np.repeat([0, 1, 2], 5)
    rows = per_class_report(np.ones((15, 4)), labels)
    assert [row["acc"] for row in rows] == [0.0, 0.0, 0.0]
    assert all(row["min"] == row["max"] == 0.0 for row in rows)
