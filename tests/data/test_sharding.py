"""Each rank's shard of a sampler's global batches (distributed training)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tripletlab.data import PKSampler, RankShard, ShuffleSampler


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_make_up_the_global_batches_of_one_process(world):
    labels = np.repeat(np.arange(10), 37)
    for make in (lambda: PKSampler(labels, 4, 8, seed=3), lambda: ShuffleSampler(370, 30, 3)):
        single = make()
        single.set_epoch(2)
        shards = [RankShard(make(), rank, world) for rank in range(world)]
        for shard in shards:
            shard.set_epoch(2)
            assert len(shard) == len(single)
        parts: list[list[np.ndarray]] = [[] for _ in range(world)]
        for shard, part in zip(shards, parts, strict=True):
            for piece in shard:  # each part knows its global batch and where it starts in it
                np.testing.assert_array_equal(shard.batch[shard.start :][: len(piece)], piece)
                part.append(piece)
        for step, batch in enumerate(single):
            pieces = [part[step] for part in parts]
            np.testing.assert_array_equal(np.concatenate(pieces), batch)
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
        covered = np.concatenate([np.concatenate(part) for part in parts])
        np.testing.assert_array_equal(np.sort(covered), np.sort(np.concatenate(list(single))))
    with pytest.raises(ValueError, match="rank must be in"):
        RankShard(single, 2, 2)


def test_a_shard_passes_the_rest_to_its_sampler_and_copies():
    labels = np.repeat(np.arange(4), 9)
    shard = RankShard(PKSampler(labels, 2, 4, seed=1), 1, 2)
    shard.set_epoch(1)
    assert shard.epoch == 1 and shard.dropped == shard.sampler.dropped
    twin = copy.deepcopy(shard)
    for mine, theirs in zip(shard, twin, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(AttributeError):
        _ = shard.no_such_attribute
