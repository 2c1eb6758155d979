"""Triplet loss with online semi-hard negative mining (TF Addons `TripletSemiHardLoss`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.losses._mined import block_masks, mined_triplet_loss, row_blocks
from tripletlab.losses.distances import Distance


def _semihard_negatives(dist: Tensor, negative: Tensor) -> tuple[Tensor, Tensor]:
    """For every (anchor, candidate) in a block, the semi-hard negative of TF Addons.

    The negative is the closest one strictly farther than the candidate; if there is none, the
    farthest negative; an anchor with no negative at all uses its row minimum (TF Addons'
    masked maximum over an empty set).

    Args:
        dist: (r, N) distances from r anchors to all N items.
        negative: (r, N) negative mask.
    Returns:
        (r, N) distance to the chosen negative and (r, N) its column index.
    Reference: Schroff et al. 2015, https://arxiv.org/abs/1503.03832
    """
    neg_sorted, neg_order = torch.where(negative, dist, torch.inf).sort(dim=1)  # (r, N)
    num_neg = negative.sum(1, keepdim=True)  # (r, 1)
    first_farther = torch.searchsorted(neg_sorted, dist, right=True)  # (r, N)
    has_farther = first_farther < num_neg
    slot = torch.where(has_farther, first_farther, (num_neg - 1).clamp_min(0))
    neg_dist = neg_sorted.gather(1, slot)
    neg_index = neg_order.gather(1, slot)
    no_negative = num_neg.squeeze(1) == 0
    if no_negative.any():
        row_min, row_argmin = dist[no_negative].min(1, keepdim=True)
        neg_dist[no_negative] = row_min.expand(-1, dist.shape[1])
        neg_index[no_negative] = row_argmin.expand(-1, dist.shape[1])
    return neg_dist, neg_index


def _semihard_selector(margin: float):
    def select(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        grad = torch.zeros_like(dist)
        total = torch.zeros((), dtype=torch.float64, device=dist.device)
        num_pairs = 0
        for rows in row_blocks(*dist.shape):
            block = dist[rows]  # (r, N)
            positive, negative = block_masks(labels, rows)
            neg_dist, neg_index = _semihard_negatives(block, negative)
            pair_loss = block - neg_dist + margin
            active = (positive & (pair_loss > 0)).to(dist.dtype)
            total += (pair_loss * active).sum(dtype=torch.float64)
            num_pairs += int(positive.sum())
            grad[rows] += active
            grad[rows].scatter_add_(1, neg_index, -active)
        if num_pairs == 0:  # TF Addons divides by zero here and returns NaN.
            return dist.new_zeros(()), grad
        grad /= num_pairs
        return (total / num_pairs).to(dist.dtype), grad

    return select


def triplet_semihard_loss(
    embeddings: Tensor, labels: Tensor, *, margin: float = 1.0, distance: Distance = "L2"
) -> Tensor:
    """Triplet loss over all positive pairs of the batch, each with its semi-hard negative.

    For every ordered pair (a, p), a != p with the same label, the negative is the closest one
    with d(a, n) > d(a, p), or else the farthest negative. The loss is
    `max(d(a, p) - d(a, n) + margin, 0)` averaged over all such pairs, zeros included. Values
    equal TF Addons' `triplet_semihard_loss`, except that a batch without any positive pair
    gives 0 (and zero gradients) instead of NaN. Memory is O(N^2).

    Args:
        embeddings: (N, D) floating point; float16 / bfloat16 are computed in float32.
        labels: (N,) or (N, 1) integer class ids.
        margin: the margin of the triplet loss.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        Scalar loss in the dtype of `embeddings`.
    Reference: Schroff et al. 2015, FaceNet, https://arxiv.org/abs/1503.03832
    """
    return mined_triplet_loss(embeddings, labels, distance, _semihard_selector(float(margin)))


class TripletSemiHardLoss(nn.Module):
    """`nn.Module` holding the hyper-parameters of `triplet_semihard_loss`."""

    def __init__(self, margin: float = 1.0, distance: Distance = "L2") -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, D) embeddings, (N,) labels -> scalar loss."""
        return triplet_semihard_loss(embeddings, labels, margin=self.margin, distance=self.distance)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}"
