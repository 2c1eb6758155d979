from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab.losses import TripletMarginLoss, triplet_margin_loss


@pytest.mark.parametrize("distance", ["squared-L2", "L2", "angular"])
def test_margin_loss_against_numpy(distance):
    rng = np.random.default_rng(0)
    a, p, n = (rng.normal(size=(10, 4)) for _ in range(3))
    concatenated = torch.tensor(np.concatenate([a, p, n], axis=1), requires_grad=True)
    loss = triplet_margin_loss(concatenated, margin=0.5, distance=distance)
    loss.backward()
    if distance == "angular":

        def dist(u, v):
            return 1 - (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    elif distance == "L2":

        def dist(u, v):
            return np.linalg.norm(u - v, axis=1)
    else:

        def dist(u, v):
            return ((u - v) ** 2).sum(1)

    expected = np.maximum(dist(a, p) - dist(a, n) + 0.5, 0).mean()
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(concatenated.grad).all()
    assert TripletMarginLoss(0.5, distance)(concatenated) == loss


def test_margin_loss_rejects_a_bad_shape():
    with pytest.raises(ValueError, match="3 \\* D"):
        triplet_margin_loss(torch.zeros(4, 5))
