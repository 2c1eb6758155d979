"""Triplet margin loss on explicit (anchor, positive, negative) triplets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.losses.distances import Distance, check_distance


def _rowwise_distance(a: Tensor, b: Tensor, distance: Distance) -> Tensor:
    """(N, D), (N, D) -> (N,) distances between matching rows."""
    if distance == "angular":
        cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-6)
        return (1.0 - cos).clamp_min(0.0)
    squared = (a - b).square().sum(1)
    if distance == "squared-L2":
        return squared
    # The epsilon keeps the gradient finite for identical rows.
    return torch.sqrt(squared + 1e-12)


def triplet_margin_loss(
    concatenated: Tensor, *, margin: float = 1.0, distance: Distance = "squared-L2"
) -> Tensor:
    """`mean(max(d(a, p) - d(a, n) + margin, 0))` over the rows of a triplet model's output.

    Args:
        concatenated: (N, 3 * D): anchor, positive and negative embeddings side by side, as
            `TripletNet` returns them.
        margin: the margin (the triplet-loss MNIST project used 1).
        distance: "squared-L2" (that project's choice), "L2" or "angular".
    Returns:
        Scalar loss, in the dtype of the input (float16 / bfloat16 computed in float32).
    Reference: Schroff et al. 2015, FaceNet, https://arxiv.org/abs/1503.03832
    """
    check_distance(distance)
    if concatenated.ndim != 2 or concatenated.shape[1] % 3:
        raise ValueError(
            f"expected (N, 3 * D) anchor | positive | negative, got {tuple(concatenated.shape)}"
        )
    precise = (
        concatenated.float()
        if concatenated.dtype in (torch.float16, torch.bfloat16)
        else concatenated
    )
    if len(precise) == 0:  # no triplet: 0, with a (zero) gradient, not the NaN of an empty mean
        return precise.sum().to(concatenated.dtype)
    gap = triplet_gaps(precise, distance)
    return (gap + margin).clamp_min(0.0).mean().to(concatenated.dtype)


def triplet_gaps(concatenated: Tensor, distance: Distance = "squared-L2") -> Tensor:
    """`d(a, p) - d(a, n)` of each row of (N, 3 * D) anchor | positive | negative: (N,).
    A triplet's loss is `max(gap + margin, 0)`."""
    anchor, positive, negative = concatenated.chunk(3, dim=1)
    return _rowwise_distance(anchor, positive, distance) - _rowwise_distance(
        anchor, negative, distance
    )


class TripletMarginLoss(nn.Module):
    """`nn.Module` holding the hyper-parameters of `triplet_margin_loss`."""

    def __init__(self, margin: float = 1.0, distance: Distance = "squared-L2") -> None:
        super().__init__()
        self.margin = margin
        self.distance = check_distance(distance)

    def forward(self, concatenated: Tensor) -> Tensor:
        """(N, 3 * D) -> scalar loss."""
        return triplet_margin_loss(concatenated, margin=self.margin, distance=self.distance)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}"
