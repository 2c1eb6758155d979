from __future__ import annotations

import numpy as np
import pytest

from tripletlab.data import PKSampler, ShuffleSampler


def test_shuffle_sampler_covers_every_item_once_and_keeps_the_remainder():
    sampler = ShuffleSampler(100, 32, seed=3)
    batches = list(sampler)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    sampler.set_epoch(1)
    assert not np.array_equal(np.concatenate(list(sampler)), np.concatenate(batches))
    sampler.set_epoch(0)
    assert np.array_equal(np.concatenate(list(sampler)), np.concatenate(batches))


@pytest.mark.parametrize(("items", "sizes"), [(97, [32, 32, 33]), (33, [33]), (1, [1]), (2, [2])])
def test_a_lone_last_image_joins_the_batch_before(items, sizes):
    """One image has no pair, and BatchNorm in training mode refuses a batch of one."""
    sampler = ShuffleSampler(items, 32, seed=0)
    batches = list(sampler)
    assert [len(b) for b in batches] == sizes and len(sampler) == len(sizes)
    assert sorted(np.concatenate(batches).tolist()) == list(range(items))


@pytest.mark.parametrize("counts", [[20, 20, 20, 20], [37, 5, 12, 40, 3, 8], [2, 50, 50]])
def test_pk_batches_have_p_classes_of_k_images(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    sampler = PKSampler(labels, classes_per_batch=3, samples_per_class=4, seed=1)
    batches = list(sampler)
    seen = np.concatenate(batches)
    for batch in batches:
        classes, per_class = np.unique(labels[batch], return_counts=True)
        assert len(classes) >= 2 and len(classes) <= 3
        assert np.all(per_class == 4)
    # Every image is seen, apart from the groups of a lone last class that is counted.
    missing = set(range(len(labels))) - set(seen.tolist())
    assert len(missing) <= sampler.dropped
    assert len(batches) == len(sampler)


def test_pk_balanced_classes_see_each_image_exactly_once():
    labels = np.repeat(np.arange(10), 40)
    batches = list(PKSampler(labels, classes_per_batch=5, samples_per_class=4, seed=0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(400))


def test_pk_rejects_settings_without_positives_or_negatives():
    with pytest.raises(ValueError, match="at least 2"):
        PKSampler(np.array([0, 0, 1, 1]), 2, 1)
    with pytest.raises(ValueError, match="two classes"):
        PKSampler(np.zeros(10, dtype=int), 2, 2)


@pytest.mark.parametrize(
    ("batch_size", "classes", "message"),
    [(30, 10, "hold 28 images (P 7 x K 4), not train.batch_size 30: 30 is not a multiple of K"),
     (64, 10, "hold 40 images (P 10 x K 4), not train.batch_size 64: the data has only 10"),
     (32, 10, None)],
)  # fmt: skip
def test_pk_batches_of_another_size_than_asked_are_said(batch_size, classes, message, caplog):
    """P = batch_size // K, at most the number of classes: batches of 40 for --batch-size 64
    on 10 classes, silently."""
    from tripletlab.config import RunConfig, merge
    from tripletlab.data.samplers import build_sampler

    config = merge(RunConfig(), {"train": {"sampler": "pk", "batch_size": batch_size}})
    with caplog.at_level("WARNING"):
        sampler = build_sampler(config, np.arange(100) % classes, lambda: None)
    assert len(next(iter(sampler))) == (int(message.split()[1]) if message else batch_size)
    assert (message in caplog.text) if message else not caplog.text
