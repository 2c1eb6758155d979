from __future__ import annotations

import pytest
import torch

from tripletlab.models.augment import Augment


def test_identity_in_eval_mode_and_when_disabled():
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(Augment(flip=True, rotation=30).eval()(images), images)
    assert torch.equal(Augment().train()(images), images)


def test_flip_mirrors_about_half_of_the_images():
    torch.manual_seed(0)
    images = torch.rand(200, 1, 8, 8)
    out = Augment(flip=True).train()(images)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    same = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 70 < sum(flipped) < 130


def test_rotation_and_translation_move_pixels_but_keep_shape():
    torch.manual_seed(0)
    images = torch.zeros(8, 3, 32, 32)
    images[:, :, 12:20, 12:20] = 1.0
    out = Augment(rotation=30, translate=0.2).train()(images)
    assert out.shape == images.shape
    assert not torch.allclose(out, images)
    assert float(out.sum()) == pytest.approx(float(images.sum()), rel=0.2)  # moved, not lost
