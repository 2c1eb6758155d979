"""Batch-all triplet loss: every valid triplet of the batch, averaged over the non-zero ones."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.losses._mined import block_masks, mined_triplet_loss, row_blocks
from tripletlab.losses.distances import Distance


def _batch_all_block(
    block: Tensor, positive: Tensor, negative: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum and count of the non-zero triplet losses of one block of anchors, and dL/d(dist).

    For a pair (a, p) with threshold t = d(a, p) + margin, the negatives with d(a, n) < t are
    exactly the triplets with a positive loss; sorting each row's negatives and a prefix sum give
    their count c and the sum of their losses c * t - sum(d(a, n)) in O(N log N) per row.

    Args:
        block: (r, N) distances from r anchors.
        positive, negative: (r, N) masks.
    Returns:
        Loss sum (float64 scalar), triplet count (int64 scalar), (r, N) unnormalized gradient.
    """
    dist = block.double()
    threshold = dist + margin  # (r, N), meaningful where positive
    neg_sorted = torch.where(negative, dist, torch.inf).sort(dim=1).values
    prefix = torch.cat(
        [dist.new_zeros(dist.shape[0], 1), neg_sorted.nan_to_num(posinf=0.0).cumsum(1)], dim=1
    )  # (r, N + 1): prefix[k] = sum of the k closest negatives
    count = torch.searchsorted(neg_sorted, threshold) * positive  # (r, N) negatives below t
    loss_sum = (count * threshold - prefix.gather(1, count)).masked_fill(~positive, 0.0).sum()
    # Negative n has a positive loss with every positive p whose threshold exceeds d(a, n).
    thresholds_sorted = torch.where(positive, threshold, -torch.inf).sort(dim=1).values
    above = dist.shape[1] - torch.searchsorted(thresholds_sorted, dist, right=True)
    grad = count.to(block.dtype) - (above * negative).to(block.dtype)
    return loss_sum, count.sum(), grad


def _batch_all_selector(margin: float):
    def select(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        grad = torch.zeros_like(dist)
        total = torch.zeros((), dtype=torch.float64, device=dist.device)
        num_triplets = 0
        for rows in row_blocks(*dist.shape):
            positive, negative = block_masks(labels, rows)
            loss_sum, count, block_grad = _batch_all_block(dist[rows], positive, negative, margin)
            total += loss_sum
            num_triplets += int(count)
            grad[rows] = block_grad
        if num_triplets == 0:
            return dist.new_zeros(()), grad.zero_()
        grad /= num_triplets
        return (total / num_triplets).to(dist.dtype), grad

    return select


def triplet_batch_all_loss(
    embeddings: Tensor, labels: Tensor, *, margin: float = 1.0, distance: Distance = "L2"
) -> Tensor:
    """Mean of `max(d(a, p) - d(a, n) + margin, 0)` over the triplets where it is non-zero.

    All triplets of the batch are used: a != p with the same label, n with another label. Only
    triplets with a positive loss enter the average ("batch all" of Hermans et al.); with none
    the loss is 0. Time O(N^2 log N), memory O(N^2).

    Args:
        embeddings: (N, D) floating point; float16 / bfloat16 are computed in float32.
        labels: (N,) or (N, 1) integer class ids.
        margin: the margin of the triplet loss.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        Scalar loss in the dtype of `embeddings`.
    Reference: Hermans et al. 2017, https://arxiv.org/abs/1703.07737
    """
    return mined_triplet_loss(embeddings, labels, distance, _batch_all_selector(float(margin)))


class TripletBatchAllLoss(nn.Module):
    """`nn.Module` holding the hyper-parameters of `triplet_batch_all_loss`."""

    def __init__(self, margin: float = 1.0, distance: Distance = "L2") -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, D) embeddings, (N,) labels -> scalar loss."""
        return triplet_batch_all_loss(
            embeddings, labels, margin=self.margin, distance=self.distance
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}"
