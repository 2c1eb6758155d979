"""Every mined loss against the brute-force NumPy reference, and its gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab.config import LossConfig
from tripletlab.losses import (
    DISTANCES,
    TripletBatchAllLoss,
    TripletHardLoss,
    TripletSemiHardLoss,
    build_loss,
    triplet_batch_all_loss,
    triplet_hard_loss,
    triplet_margin_loss,
    triplet_semihard_loss,
)

from . import reference
from .conftest import as_tensor, make_embeddings

LOSSES = {
    "semihard": (
        lambda x, y, m, d: triplet_semihard_loss(x, y, margin=m, distance=d),
        lambda x, y, m, d: reference.semihard(x, y, m, d),
    ),
    "hard": (
        lambda x, y, m, d: triplet_hard_loss(x, y, margin=m, distance=d),
        lambda x, y, m, d: reference.hard(x, y, m, d, soft=False),
    ),
    "hard-soft": (
        lambda x, y, m, d: triplet_hard_loss(x, y, margin=m, soft=True, distance=d),
        lambda x, y, m, d: reference.hard(x, y, m, d, soft=True),
    ),
    "batch-all": (
        lambda x, y, m, d: triplet_batch_all_loss(x, y, margin=m, distance=d),
        lambda x, y, m, d: reference.batch_all(x, y, m, d),
    ),
}


@pytest.mark.parametrize("margin", [0.2, 1.0, 2.5])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_float32_matches_reference(kind, distance, margin, layout):
    name, labels = layout
    x = make_embeddings(len(labels), seed=len(name))
    loss_fn, ref_fn = LOSSES[kind]
    got = loss_fn(torch.tensor(x), torch.tensor(labels), margin, distance)
    assert got.dtype == torch.float32 and got.ndim == 0
    np.testing.assert_allclose(
        float(got), ref_fn(x, labels, margin, distance), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_bfloat16_computed_in_float32_and_cast_back(kind, distance):
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 0])
    x = torch.tensor(make_embeddings(len(labels), seed=4)).to(torch.bfloat16)
    loss_fn, ref_fn = LOSSES[kind]
    got = loss_fn(x, torch.tensor(labels), 1.0, distance)
    assert got.dtype == torch.bfloat16
    expected = ref_fn(x.float().numpy(), labels, 1.0, distance)
    np.testing.assert_allclose(float(got), expected, rtol=1e-2, atol=1e-2)
    float32_loss = loss_fn(x.float(), torch.tensor(labels), 1.0, distance)
    assert got == float32_loss.to(torch.bfloat16)


def test_no_positive_pair_gives_zero_not_nan():
    x = as_tensor(make_embeddings(6))
    labels = torch.arange(6)
    for loss_fn in (triplet_semihard_loss, triplet_batch_all_loss):
        x.grad = None
        loss = loss_fn(x, labels)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.all(x.grad == 0)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_gradients_match_finite_differences(kind, distance):
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 3])
    x = torch.tensor(make_embeddings(9, dim=4, seed=7), dtype=torch.float64, requires_grad=True)
    loss_fn, _ = LOSSES[kind]
    # A large margin keeps every triplet away from the hinge, where the loss is not smooth.
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels, 0.7, distance), (x,))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", sorted(LOSSES))
@pytest.mark.parametrize("labels", [[5] * 6, [0, 1, 2, 3], [0, 0, 1, 1, 2, 2]])
def test_gradients_finite_on_edge_cases(kind, distance, labels):
    # Duplicated rows put exact zeros and ties in the distance matrix.
    base = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    x = base.repeat(2, 1)[: len(labels)].clone().requires_grad_(True)
    loss_fn, ref_fn = LOSSES[kind]
    loss = loss_fn(x, torch.tensor(labels), 1.0, distance)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    if distance != "angular":  # integer inputs make the L2 arithmetic exact, ties included
        expected = ref_fn(x.detach().numpy(), np.array(labels), 1.0, distance)
        np.testing.assert_allclose(float(loss.detach()), expected, rtol=1e-6, atol=1e-6)


def test_float64_stays_float64():
    x = torch.tensor(make_embeddings(8), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert triplet_semihard_loss(x, labels).dtype == torch.float64


def test_labels_of_shape_n_by_one_accepted():
    x = torch.tensor(make_embeddings(8))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert triplet_hard_loss(x, labels[:, None]) == triplet_hard_loss(x, labels)


@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "embeddings must be"),
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), "labels must be"),
        (torch.zeros(4, 2), torch.zeros(4), "labels must be integers"),
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating"),
    ],
)
def test_bad_inputs_raise_clear_errors(embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        triplet_semihard_loss(embeddings, labels)


def test_modules_hold_hyper_parameters():
    x = torch.tensor(make_embeddings(10))
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 0])
    for module, fn in [
        (TripletSemiHardLoss(margin=0.5, distance="angular"), triplet_semihard_loss),
        (TripletBatchAllLoss(margin=0.5, distance="angular"), triplet_batch_all_loss),
    ]:
        assert module(x, labels) == fn(x, labels, margin=0.5, distance="angular")
    soft = TripletHardLoss(soft=True, distance="squared-L2")
    assert soft(x, labels) == triplet_hard_loss(x, labels, soft=True, distance="squared-L2")
    assert "margin=0.5" in repr(TripletSemiHardLoss(margin=0.5))


def test_build_loss_follows_the_config_which_refuses_unknown_names():
    loss = build_loss(LossConfig(name="batch-all", margin=0.3))
    assert isinstance(loss, TripletBatchAllLoss) and loss.margin == 0.3
    hard = build_loss(LossConfig(name="hard", soft=True, distance="angular"))
    assert isinstance(hard, TripletHardLoss) and hard.soft and hard.distance == "angular"
    with pytest.raises(ValueError, match="semihard, hard, batch-all"):
        LossConfig(name="contrastive")
    with pytest.raises(ValueError, match="soft"):
        LossConfig(name="semihard", soft=True)


@pytest.mark.parametrize("kind", ["semihard", "batch-all", "hard"])
def test_blocked_rows_equal_single_block(kind, monkeypatch):
    """A batch split into many row blocks gives the same loss and gradient as one block."""
    import tripletlab.losses._mined as mined

    labels = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(1))
    x0 = torch.tensor(make_embeddings(64, dim=8, seed=9))
    loss_fn, _ = LOSSES[kind]
    results = []
    for block in (1 << 21, 64 * 5):
        monkeypatch.setattr(mined, "_BLOCK_ELEMENTS", block)
        x = x0.clone().requires_grad_(True)
        loss = loss_fn(x, labels, 1.0, "L2")
        loss.backward()
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_semihard_negative_must_be_strictly_farther_than_the_positive():
    """On a line: anchor 0 (class 0) with positive 1; negatives -1 (as far as the positive: not
    semi-hard) and 3. Pairs (a, p) and their losses with margin 1:
    (0, 1): d 1, semi-hard negative 3 at 3 -> 0;   (1, 0): d 1, negatives at 2 and 2 -> 0;
    (-1, 3): d 4, none farther, the farthest is 1 at 2 -> 3;
    (3, -1): d 4, none farther, the farthest is 0 at 3 -> 2. Mean 5 / 4. Taking the negative
    at an equal distance would make the first pair's loss 1 and the mean 1.5."""
    x = np.array([[0.0], [1.0], [-1.0], [3.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    got = float(triplet_semihard_loss(torch.tensor(x), torch.tensor(labels), margin=1.0))
    assert got == 1.25
    assert reference.semihard(x, labels, 1.0, "L2") == 1.25


@pytest.mark.parametrize("distance", ["L2", "squared-L2"])
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_exact_ties_match_reference(kind, distance):
    """Points on a small integer grid: many distances are exactly equal (in float32 too), so
    every strict or non-strict comparison of the mining rules is exercised."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(24, 2)).astype(np.float32)
    labels = rng.integers(0, 4, size=24)
    loss_fn, ref_fn = LOSSES[kind]
    for margin in (0.0, 1.0, 2.0):
        got = float(loss_fn(torch.tensor(x), torch.tensor(labels), margin, distance))
        np.testing.assert_allclose(got, ref_fn(x, labels, margin, distance), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_an_empty_batch_gives_zero_not_nan(kind):
    loss_fn, _ = LOSSES[kind]
    x = torch.zeros(0, 4, requires_grad=True)
    loss = loss_fn(x, torch.zeros(0, dtype=torch.long), 1.0, "L2")
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and x.grad.shape == (0, 4)
    empty = torch.zeros(0, 12, requires_grad=True)
    assert triplet_margin_loss(empty).item() == 0.0


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_labels_may_be_numpy_or_a_list(kind):
    loss_fn, _ = LOSSES[kind]
    x = torch.tensor(make_embeddings(8, seed=3))
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    expected = loss_fn(x, torch.tensor(labels), 1.0, "L2")
    assert loss_fn(x, np.array(labels), 1.0, "L2") == expected
    assert loss_fn(x, labels, 1.0, "L2") == expected
    with pytest.raises(ValueError, match="must be a torch Tensor"):
        loss_fn(x.numpy(), labels, 1.0, "L2")
