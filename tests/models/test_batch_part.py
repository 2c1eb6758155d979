"""Parts of a batch drawn as in the whole batch (what each rank of a distributed run does)."""

from __future__ import annotations

import pytest
import torch

from tripletlab.models.augment import Augment
from tripletlab.models.batch_part import batch_part, draw_layout, rand_rows, rows_before


def test_augmenting_the_parts_of_a_batch_augments_the_whole_batch():
    augment = Augment(flip=True, rotation=20, translate=0.2).train()
    images = torch.rand(9, 1, 12, 12)
    state = torch.get_rng_state()
    whole = augment(images)
    after_whole = torch.rand(3)
    parts = []
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        torch.set_rng_state(state)  # every rank starts from the same generator state
        with batch_part(start, 9):
            parts.append(augment(images[start:stop]))
        assert torch.equal(torch.rand(3), after_whole)  # and the ranks stay in step
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


def test_outside_a_part_draws_are_plain_and_bad_parts_are_refused():
    state = torch.get_rng_state()
    plain = torch.rand(5, 2)
    torch.set_rng_state(state)
    assert torch.equal(rand_rows(5, 2), plain) and rows_before() == 0
    with batch_part(3, 8):
        assert rows_before() == 3
        with pytest.raises(ValueError, match="of a batch of 8"):
            rand_rows(6)
    assert rows_before() == 0
    with pytest.raises(ValueError, match="out of range"), batch_part(9, 8):
        pass


def test_draws_follow_the_layout_a_tensor_is_stored_in():
    x = torch.randn(2, 3, 4, 5)
    assert draw_layout(x) == torch.contiguous_format
    assert draw_layout(x.contiguous(memory_format=torch.channels_last)) == torch.channels_last
    pooled = torch.randn(2, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    assert draw_layout(pooled) == torch.contiguous_format  # both layouts at once: the plain one
    assert draw_layout(x.transpose(2, 3)) == torch.contiguous_format  # neither: copied plainly
    assert draw_layout(torch.randn(4, 6).t()) == torch.contiguous_format
