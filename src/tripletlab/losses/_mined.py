"""Shared machinery of the in-batch (mined) triplet losses.

Each loss supplies a *selector*: given the (N, N) distance matrix and the labels, it returns the
loss and dL/d(distance). The selector runs without autograd, one block of anchor rows at a time,
and the gradient reaches the embeddings through `distance_vjp`. Memory stays O(N^2): the distance
matrix, one gradient matrix and a bounded block of temporaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from tripletlab.losses.distances import (
    Distance,
    check_distance,
    distance_grad_weights,
    distance_matrix,
    distance_vjp,
)

Selector = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

# Elements per block of anchor rows; bounds the temporaries of sorting and searching.
_BLOCK_ELEMENTS = 1 << 21


class _MinedTripletLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor, distance: str, selector: Selector):
        dist = distance_matrix(embeddings, distance)
        loss, grad_dist = selector(dist, labels)
        ctx.distance = distance
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(embeddings, distance_grad_weights(dist, grad_dist, distance))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor):
        embeddings, weights = ctx.saved_tensors
        grad = distance_vjp(embeddings, weights, ctx.distance) * grad_loss
        return grad, None, None, None


def mined_triplet_loss(
    embeddings: Tensor, labels: Tensor, distance: Distance, selector: Selector
) -> Tensor:
    """Validate inputs, compute in float32 for half precision, and apply the selector.

    Args:
        embeddings: (N, D) floating point.
        labels: (N,) or (N, 1) integer class ids (a Tensor, NumPy array or list).
        distance: "L2", "squared-L2" or "angular".
        selector: see the module docstring.
    Returns:
        Scalar loss in the dtype of `embeddings`.
    Raises:
        ValueError: on shapes, dtypes or a distance that are not supported.
    """
    check_distance(distance)
    if not isinstance(embeddings, Tensor):
        raise ValueError(
            f"embeddings must be a torch Tensor (N, D), got {type(embeddings).__name__}"
        )
    labels = torch.as_tensor(labels)  # NumPy arrays and lists are welcome
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be (N,) or (N, 1) with N = {embeddings.shape[0]}, "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    precise = embeddings
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        precise = embeddings.float()
    labels = labels.to(device=embeddings.device, dtype=torch.long)
    loss = _MinedTripletLoss.apply(precise, labels, distance, selector)
    return loss.to(embeddings.dtype)


def row_blocks(num_rows: int, num_cols: int) -> Iterator[slice]:
    """Slices of anchor rows whose (rows, num_cols) temporaries stay under the block budget."""
    step = max(1, _BLOCK_ELEMENTS // max(num_cols, 1))
    for start in range(0, num_rows, step):
        yield slice(start, min(start + step, num_rows))


def block_masks(labels: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
    """Positive and negative masks of one block of anchors.

    Args:
        labels: (N,) class ids.
        rows: the anchors of the block, `r` of them.
    Returns:
        positive: (r, N) same label, excluding the anchor itself; negative: (r, N) other label.
    """
    same = labels[rows, None] == labels[None, :]  # (r, N)
    anchors = torch.arange(rows.start, rows.stop, device=labels.device)
    negative = ~same
    same[torch.arange(len(anchors), device=labels.device), anchors] = False
    return same, negative
