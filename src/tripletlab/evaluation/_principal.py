"""Principal axes of the embeddings and small k-means clusters of each class on them.

Trained embeddings often keep nearly all their variance on a few principal axes: ranked
through those (with a proven bound on the error) and grouped in clusters, a query of the
retrieval metrics reads only the items that may matter (`_blocks`, `_kernels`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluation import _blocks

# Variance share allowed off the principal axes for ranking through them (see `low_rank`).
_LOW_RANK_TAIL = 1e-4
# Items per k-means cluster of a class on the principal axes, and k-means iterations (on the
# default run's embeddings, 6 iterations: 0.55 s and 409 clusters read per query; 4: 0.37 s
# and 415; 3: 0.34 s and 420).
_CLUSTER_SIZE = 16
_KMEANS_STEPS = 4


def low_rank(x: Tensor) -> tuple[Tensor, Tensor, Tensor, float] | None:
    """Principal-axes coordinates of `x` when a few axes hold nearly all its variance.

    Returns None, or (z, norms, error, slack): z (N, m) float32 coordinates on m <= D / 4
    axes, norms (N,) float32 squared norms of the centred items, error (N,) float64 and slack
    such that |exact - approximate squared distance| <= error_i * error_j + slack, where the
    approximation is norms_i + norms_j - 2 z_i . z_j: it misses -2 r_i . r_j, r being the
    residuals off the axes, and is computed in float32 (slack). Trained embeddings often
    qualify (256-d MNIST ones: 10 axes hold all but 1e-4 of the variance).
    """
    n, dim = x.shape
    if dim < 64 or n < 4 * dim:
        return None
    centred = (x - x.mean(0)).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    tail = eigenvalues.clamp_min(0).flip(0).cumsum(0).flip(0)  # tail[m]: variance off m axes
    total = float(tail[0])
    if total <= 0.0:
        return None
    m = next((m for m in range(8, dim // 4 + 1, 8) if tail[m] <= _LOW_RANK_TAIL * total), None)
    if m is None:
        return None
    axes = eigenvectors[:, :m]
    z = centred @ axes
    norms = centred.square().sum(1)
    # |residual|^2 = |centred|^2 - |z|^2 (orthonormal axes); float64 cancellation errs by
    # about 1e-13 of the norm (measured 6e-13 absolute on 60,000 MNIST embeddings against
    # residuals of at least 1.4e-3), allowed for 1e-12 of it.
    residual = (norms - z.square().sum(1) + 1e-12 * norms).clamp_min(0).sqrt()  # (N,)
    # float32 rounding of norms_i + norms_j - 2 z_i . z_j is under (m + 3) * 2^-24 * 4 * the
    # largest squared norm; allowed for three times over.
    slack = 3 * (m + 3) * 4.0 * float(norms.max()) * 2.0**-24
    return z.float(), norms.float(), (2.0**0.5) * residual, slack


def _nearest(points: Tensor, centres: Tensor) -> Tensor:
    """(n, m), (k, m) -> (n,) index of each point's nearest centre, in blocks of points."""
    step = max(1, _blocks.BLOCK_ELEMENTS // len(centres))
    return torch.cat([torch.cdist(points[first : first + step], centres).argmin(1)
                      for first in range(0, len(points), step)])  # fmt: skip


def _kmeans(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """(n, m) -> (n,) cluster of each point after k-means from k random points."""
    centre = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(_KMEANS_STEPS):
        nearest = _nearest(points, centre)
        sizes_k = torch.bincount(nearest, minlength=k)
        sums = torch.zeros_like(centre).index_add_(0, nearest, points)
        moved = sizes_k > 0  # an emptied cluster keeps its centre
        centre[moved] = sums[moved] / sizes_k[moved, None]
    return _nearest(points, centre)


def class_clusters(z: Tensor, stops: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Small k-means clusters of each class's principal-axes coordinates.

    Args:
        z: (N, m) float32 coordinates, classes in contiguous ranges ending at `stops`.
    Returns:
        order (N,) int64: items cluster after cluster, each class's range kept, each cluster's
        members by distance from its centre; centres (K, m) float64; radius (K,) float64, the
        largest distance of a member from its centre; starts (K + 1,) int64, cluster k is
        items starts[k]..starts[k + 1] after `order`.
    """
    generator = torch.Generator().manual_seed(0)
    order, centres, radius, sizes = [], [], [], []
    for start, stop in zip([0, *stops[:-1]], stops, strict=True):
        points = z[start:stop]
        k = max(1, round(len(points) / _CLUSTER_SIZE))
        nearest = _kmeans(points, k, generator)
        size = torch.bincount(nearest, minlength=k)
        kept = size > 0
        # Exact (float64) centre and radius of each non-empty cluster's members.
        members = points.double()
        centre64 = (
            torch.zeros(k, z.shape[1], dtype=torch.float64).index_add_(0, nearest, members)
            / size.clamp_min(1)[:, None]
        )
        centre64 = centre64.float().double()  # the centres as float32 products see them
        gap = (members - centre64[nearest]).norm(dim=1)
        reach = torch.zeros(k, dtype=torch.float64).scatter_reduce_(0, nearest, gap, "amax")
        # Cluster after cluster, each from its member nearest the centre out: the first is
        # the query a tile starts from (`_kernels.tiles`).
        order.append(start + torch.from_numpy(np.lexsort((gap.numpy(), nearest.numpy()))))
        centres.append(centre64[kept])
        radius.append(reach[kept] * (1.0 + 1e-9))
        sizes.append(size[kept])
    starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cat(sizes).cumsum(0)])
    return torch.cat(order), torch.cat(centres), torch.cat(radius), starts
