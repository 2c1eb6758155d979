"""Pairwise distances with TF Addons semantics, and their vector-Jacobian product.

`pairwise_distance` is the plain differentiable version. The triplet losses instead compute the
matrix without autograd (`distance_matrix`), decide which entries matter, and push the gradient
back through `distance_vjp`, so the graph never holds several (N, N) intermediates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.config import DISTANCES, Distance

# tf.math.l2_normalize clamps the squared norm at this value.
_NORM_EPSILON = 1e-12


def check_distance(distance: str) -> Distance:
    """Return `distance` if it names a supported distance, else raise a `ValueError`."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {', '.join(DISTANCES)}")
    return distance  # type: ignore[return-value]


def _l2_normalize(x: Tensor) -> Tensor:
    """(N, D) -> (N, D), as `tf.math.l2_normalize(x, axis=1)`."""
    return x * torch.rsqrt(x.square().sum(1, keepdim=True).clamp_min(_NORM_EPSILON))


def pairwise_distance(embeddings: Tensor, distance: Distance = "L2") -> Tensor:
    """Differentiable pairwise distances exactly as TF Addons computes them.

    `L2` and `squared-L2` come from `|x|^2 + |y|^2 - 2 x.y`, clamped at 0; entries that were
    <= 0 and the diagonal are exactly 0 and pass no gradient (never NaN). `angular` is
    `max(1 - cos, 0)` of the L2-normalized rows, diagonal included as computed.

    Args:
        embeddings: (N, D) floating point.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        (N, N) distances, same dtype as `embeddings`.
    """
    check_distance(distance)
    if distance == "angular":
        unit = _l2_normalize(embeddings)
        return (1.0 - unit @ unit.T).clamp_min(0.0)
    sq_norms = embeddings.square().sum(1)
    squared = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (embeddings @ embeddings.T)
    squared = squared.clamp_min(0.0)
    zero = squared <= 0.0
    zero.fill_diagonal_(True)
    if distance == "squared-L2":
        return squared.masked_fill(zero, 0.0)
    # sqrt of a masked-in epsilon keeps the gradient finite where the distance is 0.
    return torch.sqrt(squared.masked_fill(zero, 1e-16)).masked_fill(zero, 0.0)


@torch.no_grad()
def distance_matrix(embeddings: Tensor, distance: Distance = "L2") -> Tensor:
    """The same values as `pairwise_distance`, computed in place without autograd.

    Args:
        embeddings: (N, D) floating point.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        (N, N) distances; peak memory about one (N, N) matrix.
    """
    check_distance(distance)
    if distance == "angular":
        unit = _l2_normalize(embeddings)
        dist = torch.mm(unit, unit.T)  # (N, D) -> (N, N) cosines
        return dist.neg_().add_(1.0).clamp_min_(0.0)
    sq_norms = embeddings.square().sum(1)
    dist = torch.mm(embeddings, embeddings.T).mul_(-2.0)
    dist.add_(sq_norms[:, None]).add_(sq_norms[None, :]).clamp_min_(0.0)
    dist.fill_diagonal_(0.0)
    if distance == "L2":
        dist.sqrt_()
    return dist


@torch.no_grad()
def distance_grad_weights(dist: Tensor, grad_dist: Tensor, distance: Distance) -> Tensor:
    """Turn dL/d(distance) into the per-pair weights that `distance_vjp` consumes.

    Zero distances and the diagonal pass no gradient, as in `pairwise_distance`. Doing this
    step early lets a caller free `dist` and keep a single (N, N) matrix for the backward pass.

    Args:
        dist: (N, N) distances.
        grad_dist: (N, N) upstream gradient dL/d(dist); overwritten and returned.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        (N, N) weights: dL/ds for the L2 distances (s = squared distance), dL/dd for angular.
    """
    weights = grad_dist.masked_fill_(dist <= 0.0, 0.0)
    weights.fill_diagonal_(0.0)
    if distance == "L2":
        # d = sqrt(s)  ->  dL/ds = dL/dd / (2 d); entries with d = 0 are already 0.
        weights.div_(dist.clamp_min(torch.finfo(dist.dtype).tiny)).mul_(0.5)
    return weights


@torch.no_grad()
def distance_vjp(embeddings: Tensor, weights: Tensor, distance: Distance) -> Tensor:
    """Gradient with respect to the embeddings, from the weights of `distance_grad_weights`.

    Args:
        embeddings: (N, D) the inputs of the distance.
        weights: (N, N) from `distance_grad_weights`.
        distance: "L2", "squared-L2" or "angular".
    Returns:
        (N, D) gradient.
    """
    if distance == "angular":
        # d = 1 - u_i.u_j  ->  dL/du = -(W + W^T) u, then back through the normalization.
        sq_norm = embeddings.square().sum(1, keepdim=True)
        inv_norm = torch.rsqrt(sq_norm.clamp_min(_NORM_EPSILON))
        unit = embeddings * inv_norm
        grad_unit = -(weights @ unit + weights.T @ unit)
        radial = (unit * grad_unit).sum(1, keepdim=True) * unit
        radial = radial.masked_fill(sq_norm < _NORM_EPSILON, 0.0)
        return (grad_unit - radial) * inv_norm
    # s_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j  ->  dL/dx = 2 (diag(W 1 + W^T 1) x - (W + W^T) x)
    row_weight = weights.sum(1) + weights.sum(0)  # (N,)
    return 2.0 * (row_weight[:, None] * embeddings - weights @ embeddings - weights.T @ embeddings)
