"""Cross-entropy over a classifier on the embedding, alone or beside a triplet loss.

The Keras transfer-learning guide's classifier: softmax cross-entropy over C classes, or for
two classes one logit with binary cross-entropy from logits (its `Dense(1)` and
`BinaryCrossentropy(from_logits=True)`). "<triplet>+ce" adds `weight` times it to a triplet
loss on the same batch, for embeddings that also classify.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClassificationLoss(nn.Module):
    """`triplet(embeddings, labels) + weight * cross-entropy(logits, labels)`; without a triplet
    loss, the cross-entropy alone.

    Args:
        classes: the label of each classifier output, in order (two: one binary logit, the
            second class positive).
        triplet: an in-batch triplet loss `(embeddings (B, D), labels (B,)) -> ()`, or None.
        weight: the cross-entropy's weight beside the triplet loss.
    """

    def __init__(
        self, classes: Sequence[int], triplet: nn.Module | None = None, weight: float = 1.0
    ) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(classes)}")
        if len(set(classes)) != len(classes) or min(classes) < 0:
            raise ValueError(f"classifier classes must be distinct ids >= 0, got {list(classes)}")
        self.triplet = triplet
        self.weight = weight
        self.classes = tuple(int(c) for c in classes)
        lookup = torch.full((max(classes) + 1,), -1, dtype=torch.long)
        lookup[torch.as_tensor(list(classes))] = torch.arange(len(classes))
        self.register_buffer("lookup", lookup, persistent=False)

    def targets(self, labels: Tensor) -> Tensor:
        """Class labels (B,) -> classifier output indices (B,).

        Raises:
            ValueError: a label the classifier has no output for.
        """
        labels = labels.long().to(self.lookup.device)
        known = (labels >= 0) & (labels < len(self.lookup))
        index = torch.where(known, self.lookup[labels.clamp(0, len(self.lookup) - 1)], -1)
        if bool((index < 0).any()):
            unknown = sorted(set(labels[index < 0].tolist()))
            raise ValueError(f"labels {unknown[:5]} are not among the classifier's classes")
        return index

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of logits (B, C), or (B, 1) for two classes, against labels (B,)."""
        target = self.targets(labels).to(logits.device)
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
        return F.cross_entropy(logits, target)

    def forward(self, embeddings: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        """embeddings (B, D), logits (B, C or 1), labels (B,) -> scalar loss."""
        loss = self.cross_entropy(logits, labels)
        if self.triplet is None:
            return loss
        return self.triplet(embeddings, labels) + self.weight * loss
