"""Cross-entropy over the classifier, alone and beside a triplet loss, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab.config import LossConfig
from tripletlab.losses import ClassificationLoss, TripletSemiHardLoss, build_loss


def _softmax_ce(logits: np.ndarray, target: np.ndarray) -> float:
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(target)), target].mean())


def test_softmax_cross_entropy_over_the_classes_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 3))
    labels = rng.choice([2, 5, 7], size=12)  # the labels of the classifier's three outputs
    loss = ClassificationLoss([2, 5, 7])
    target = np.searchsorted([2, 5, 7], labels)
    value = loss(torch.zeros(12, 4), torch.from_numpy(logits), torch.from_numpy(labels))
    assert float(value) == pytest.approx(_softmax_ce(logits, target), rel=1e-12)


def test_two_classes_use_one_logit_and_binary_cross_entropy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 1))
    labels = rng.choice([3, 8], size=10)
    positive = (labels == 8).astype(float)  # the second class is the positive one
    p = 1 / (1 + np.exp(-logits[:, 0]))
    expected = -(positive * np.log(p) + (1 - positive) * np.log(1 - p)).mean()
    value = ClassificationLoss([3, 8])(torch.zeros(10, 2), torch.from_numpy(logits),
                                       torch.from_numpy(labels))  # fmt: skip
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_combined_loss_adds_the_weighted_cross_entropy_to_the_triplet_loss():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8, dtype=torch.float64), dim=1)
    logits = torch.randn(16, 4, dtype=torch.float64)
    labels = torch.arange(16) % 4
    combined = build_loss(LossConfig(name="semihard+ce", ce_weight=0.3), (0, 1, 2, 3))
    expected = TripletSemiHardLoss()(embeddings, labels) + 0.3 * torch.nn.functional.cross_entropy(
        logits, labels
    )
    assert torch.allclose(combined(embeddings, logits, labels), expected)
    alone = build_loss(LossConfig(name="cross-entropy"), (0, 1, 2, 3))
    assert alone.triplet is None


def test_a_label_without_an_output_is_refused():
    loss = ClassificationLoss([0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \[7\] are not among"):
        loss(torch.zeros(2, 2), torch.zeros(2, 3), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="at least two classes"):
        ClassificationLoss([4])
