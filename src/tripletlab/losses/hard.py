"""Batch-hard triplet loss (TF Addons `TripletHardLoss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripletlab.losses._mined import block_masks, mined_triplet_loss, row_blocks
from tripletlab.losses.distances import Distance


def _masked_extreme(
    dist: Tensor, mask: Tensor, *, largest: bool, fallback_largest: bool
) -> tuple[Tensor, Tensor]:
    """Row-wise max (or min) over `mask`; rows with an empty mask take the row min (or max).

    That fallback is what TF Addons' `_masked_maximum` / `_masked_minimum` return.

    Args:
        dist: (r, N) distances.
        mask: (r, N) which entries are candidates.
    Returns:
        (r,) values and (r,) column indices.
    """
    fill = -torch.inf if largest else torch.inf
    candidates = torch.where(mask, dist, fill)
    values, index = candidates.max(1) if largest else candidates.min(1)
    empty = ~mask.any(1)
    if empty.any():
        fallback, fallback_index = dist[empty].max(1) if fallback_largest else dist[empty].min(1)
        values[empty] = fallback
        index[empty] = fallback_index
    return values, index


def _hard_selector(margin: float, soft: bool):
    def select(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        grad = torch.zeros_like(dist)
        total = torch.zeros((), dtype=torch.float64, device=dist.device)
        for rows in row_blocks(*dist.shape):
            block = dist[rows]  # (r, N)
            positive, negative = block_masks(labels, rows)
            hardest_pos, pos_index = _masked_extreme(
                block, positive, largest=True, fallback_largest=False
            )
            hardest_neg, neg_index = _masked_extreme(
                block, negative, largest=False, fallback_largest=True
            )
            gap = hardest_pos - hardest_neg  # (r,)
            if soft:
                per_anchor, slope = F.softplus(gap), torch.sigmoid(gap)
            else:
                per_anchor = (gap + margin).clamp_min(0.0)
                slope = (gap + margin > 0).to(dist.dtype)
            total += per_anchor.sum(dtype=torch.float64)
            grad[rows].scatter_add_(1, pos_index[:, None], slope[:, None])
            grad[rows].scatter_add_(1, neg_index[:, None], -slope[:, None])
        num_anchors = max(dist.shape[0], 1)  # an empty batch: 0, not NaN
        grad /= num_anchors
        return (total / num_anchors).to(dist.dtype), grad

    return select


def triplet_hard_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 1.0,
    soft: bool = False,
    distance: Distance = "L2",
) -> Tensor:
    """Batch-hard triplet loss: each anchor with its hardest positive and hardest negative.

    Per anchor: the largest d(a, p) (the row minimum, 0 for L2, when it has no positive) and the
    smallest d(a, n) (the row maximum when it has no negative); the loss is
    `max(hp - hn + margin, 0)`, or `log1p(exp(hp - hn))` with `soft=True`, averaged over all
    anchors. Values equal TF Addons' `triplet_hard_loss` (which never returns NaN).

    Args:
        embeddings: (N, D) floating point; float16 / bfloat16 are computed in float32.
        labels: (N,) or (N, 1) integer class ids.
        margin: the margin (ignored when `soft`).
        soft: use the soft-margin form.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        Scalar loss in the dtype of `embeddings`.
    Reference: Hermans et al. 2017, https://arxiv.org/abs/1703.07737
    """
    return mined_triplet_loss(embeddings, labels, distance, _hard_selector(float(margin), soft))


class TripletHardLoss(nn.Module):
    """`nn.Module` holding the hyper-parameters of `triplet_hard_loss`."""

    def __init__(self, margin: float = 1.0, soft: bool = False, distance: Distance = "L2") -> None:
        super().__init__()
        self.margin = margin
        self.soft = soft
        self.distance = distance

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(N, D) embeddings, (N,) labels -> scalar loss."""
        return triplet_hard_loss(
            embeddings, labels, margin=self.margin, soft=self.soft, distance=self.distance
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft={self.soft}, distance={self.distance!r}"
