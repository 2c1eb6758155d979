from __future__ import annotations

import numpy as np
import pytest

from tripletlab.data import TripletBatchSampler, make_triplets
from tripletlab.data.triplets import mined_negatives

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 0, 1])


def test_random_triplets_follow_the_rules():
    triplets = make_triplets(LABELS, "random", np.random.default_rng(0))
    anchors, positives, negatives = triplets.T
    # Every item is an anchor once, except the lone item of class 3.
    assert sorted(anchors.tolist()) == [i for i in range(12) if i != 9]
    assert np.all(positives != anchors)
    assert np.all(LABELS[positives] == LABELS[anchors])
    assert np.all(LABELS[negatives] != LABELS[anchors])


def test_random_negatives_cover_every_other_class():
    labels = np.repeat(np.arange(4), 50)
    triplets = make_triplets(labels, "random", np.random.default_rng(1))
    for label in range(4):
        rows = triplets[labels[triplets[:, 0]] == label]
        assert set(labels[rows[:, 2]]) == set(range(4)) - {label}


def _brute_force(x, labels, anchors, positives, rule):
    chosen = []
    for a, p in zip(anchors, positives, strict=True):
        d = ((x - x[a]) ** 2).sum(1)
        negatives = [n for n in range(len(x)) if labels[n] != labels[a]]
        if rule == "hard":
            chosen.append(min(negatives, key=lambda n: d[n]))
            continue
        farther = [n for n in negatives if d[n] > d[p]]
        chosen.append(
            min(farther, key=lambda n: d[n]) if farther else max(negatives, key=lambda n: d[n])
        )
    return np.array(chosen)


@pytest.mark.parametrize("depth", [(1, 2, 4), (8, 8, 512)])
@pytest.mark.parametrize("rule", ["semihard", "hard"])
def test_mined_negatives_match_brute_force(rule, depth, monkeypatch):
    import tripletlab.data.triplets as triplets_module

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 80)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    anchors = np.arange(80)
    positives = np.array([rng.choice(np.flatnonzero((labels == labels[a]) & (np.arange(80) != a)))
                          for a in anchors])  # fmt: skip
    # (1, 2, 4): one nearest negative searched first, then 2, then 4; anchors whose positive
    # lies farther out are compared with every negative (some find none farther: the
    # farthest). Blocks of a few anchors at a time.
    monkeypatch.setattr(triplets_module, "_FIRST_DEPTH", depth[0])
    monkeypatch.setattr(triplets_module, "_DEEPER", depth[1])
    monkeypatch.setattr(triplets_module, "_MAX_DEPTH", depth[2])
    monkeypatch.setattr(triplets_module, "_BLOCK_ELEMENTS", 37)
    got = mined_negatives(x, labels, anchors, positives, rule)
    np.testing.assert_array_equal(got, _brute_force(x, labels, anchors, positives, rule))
    assert np.all(labels[got] != labels[anchors])


@pytest.mark.parametrize("rule", ["semihard", "hard"])
def test_a_collapsed_embedding_takes_the_first_of_equal_negatives(rule):
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = np.ones((6, 4), dtype=np.float32)  # every distance 0: nothing farther than a positive
    got = mined_negatives(x, labels, np.arange(6), np.array([1, 0, 3, 2, 5, 4]), rule)
    assert got.tolist() == [2, 2, 0, 0, 0, 0]


def test_semihard_falls_back_to_the_farthest_negative():
    # 1-D: anchor 0 at 0, its positive at 10, negatives at 1 and 2: none farther than 10.
    x = np.array([[0.0], [10.0], [1.0], [2.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    assert mined_negatives(x, labels, np.array([0]), np.array([1]), "semihard").tolist() == [3]
    assert mined_negatives(x, labels, np.array([0]), np.array([1]), "hard").tolist() == [2]


def test_sampler_batches_and_re_mining():
    calls = []

    def embed_all():
        calls.append(1)
        return np.random.default_rng(len(calls)).normal(size=(len(LABELS), 3))

    sampler = TripletBatchSampler(LABELS, 4, "semihard", seed=0, embed_all=embed_all, mine_every=1)
    batches = list(sampler)
    assert [b.shape for b in batches] == [(4, 3), (4, 3), (3, 3)] and len(sampler) == 3
    assert len(calls) == 3  # once at the start of the epoch, then every step
    assert sorted(np.concatenate(batches)[:, 0].tolist()) == [i for i in range(12) if i != 9]
    lone = TripletBatchSampler(LABELS, 5, seed=0)  # 11 anchors: 5 + 6, not 5 + 5 + 1
    assert [len(b) for b in lone] == [5, 6] and len(lone) == 2
    with pytest.raises(ValueError, match="embeds the training images"):
        TripletBatchSampler(LABELS, 4, "hard")
    with pytest.raises(ValueError, match="random, semihard, hard"):
        TripletBatchSampler(LABELS, 4, "easy")
