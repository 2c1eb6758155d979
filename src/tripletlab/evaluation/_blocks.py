"""Blocks of queries of the retrieval metrics: the products each compiled pass needs, and
whether the clustered pass pays off.

Each block generator yields (kernel, args, scratch per thread, out) for one class's queries
at a time, memory bounded by BLOCK_ELEMENTS; the kernels are in `_kernels`, imported on first
use (numba: compiled then, or loaded from its cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluation._kernels import buffers

# Elements of one (queries x items) distance block; bounds memory whatever the data set size
# (128 MiB of float32). Measured on 60,000 x 256: 2^25 took 13.4 to 14.4 s, 2^23 17.5 to 20.1 s,
# 2^21 27.0 s, 2^27 14.0 s (bigger blocks make the products cheaper: 4.3 s against 5.5 s).
BLOCK_ELEMENTS = 1 << 25
# The clustered pass is used when queries would visit at most this share of the clusters
# (measured on 60,000 x 256: trained MNIST embeddings 0.11, 7-10 s against 10-16 s dense;
# overlapping Gaussian classes ~0.5, 31 s against 21 s), judged on _SAMPLE queries.
_VISITED_SHARE = 0.25
_SAMPLE = 128


def squared_distances(queries: Tensor, items: Tensor, item_sq: Tensor) -> Tensor:
    """(q, D), (n, D) -> (q, n) squared Euclidean distances (ranking only needs the order)."""
    return torch.addmm(item_sq[None, :], queries, items.T, alpha=-2.0).add_(
        queries.square().sum(1, keepdim=True)
    )


def symmetric_products(x: Tensor, buffer: Tensor, band: int = 1024) -> Tensor:
    """(n, D) -> (n, n) x @ x.T in `buffer`, each product computed once and mirrored: bands
    of rows against the columns from their own on (58% of the products for n = 6,000),
    written in place by numpy's BLAS (6,742 x 256: 0.14 to 0.16 s against 0.20 to 0.23 s
    for the same through torch's, which copies each band once more). Within a band's own
    rows and columns BLAS may round (i, j) and (j, i) one ulp apart: each row is used only
    as it is, so nothing needs them equal."""
    n = len(x)
    rows, out = x.numpy(), buffer[: n * n].view(n, n)
    products = out.numpy()
    for first in range(0, n, band):
        last = min(first + band, n)
        upper = products[first:last, first:]  # (band, n - first)
        np.matmul(rows[first:last], rows[first:].T, out=upper)
        products[last:, first:last] = upper[:, last - first :].T
    return out


def dense_blocks(
    x: Tensor,
    classes: list[tuple[int, int]],
    threads: int,
    coords: Tensor,
    coord_norms: Tensor,
    error: Tensor,
    slack: float,
) -> Iterator[tuple]:
    """(kernel, args, scratch per thread, out) per block of one class's queries: every item's
    ranking distance (`_kernels.rows`). Exact when coords is x itself and error and slack
    are 0."""
    from tripletlab.evaluation._kernels import rows

    n = len(x)
    exact = coords is x
    largest = max(stop - start for start, stop in classes)
    x_sq = x.square().sum(1)
    scratch = [buffers.query_scratch(n, largest - 1) for _ in range(threads)]
    step = max(1, min(BLOCK_ELEMENTS // n, largest))
    dot_buffer = torch.empty(step * n)
    for start, stop in classes:
        for first in range(start, stop, step):
            block = slice(first, min(first + step, stop))
            b = block.stop - block.start
            dot = torch.mm(coords[block], coords.T, out=dot_buffer[: b * n].view(b, n))
            # The products with the own class: part of `dot` when it is exact.
            same = dot[:, start:stop].contiguous() if exact else x[block] @ x[start:stop].T
            args = (same.numpy(), dot.numpy(), np.arange(block.start, block.stop), start, stop,
                    x_sq.numpy(), coord_norms.numpy(), error.numpy(), slack, x.numpy())  # fmt: skip
            yield rows.query_rows, args, scratch, np.empty((b, 3))


def clusters_pay_off(
    x: Tensor,
    y: Tensor,
    counts: Tensor,
    coords: Tensor,
    clustering: tuple[Tensor, Tensor, Tensor, Tensor],
) -> bool:
    """Whether a query would visit few enough other-class clusters for the clustered pass to
    beat the dense one: estimated on evenly spaced queries from their exact tau (distance
    to the R-th nearest) and the clusters' distance bounds. x, y sorted by class, counts the
    class sizes in that order."""
    from tripletlab.evaluation._kernels import tiles

    order, centres, radius, starts = clustering
    n = len(x)
    relevant = torch.repeat_interleave(counts, counts) - 1  # (N,) R of each item
    sample = torch.linspace(0, n - 1, max(1, min(_SAMPLE, BLOCK_ELEMENTS // n))).long()
    sample = sample[relevant[sample] > 0]
    if len(sample) == 0:  # nothing to judge by (almost every class a single item)
        return False
    x_sq = x.square().sum(1)
    squared = squared_distances(x[sample], x, x_sq)
    squared[torch.arange(len(sample)), sample] = torch.inf
    tau = torch.stack([row.kthvalue(int(r)).values
                       for row, r in zip(squared, relevant[sample], strict=True)])  # fmt: skip
    gap = (torch.cdist(coords[sample].double(), centres) - radius).clamp_min(0).square()
    other = y[order][starts[:-1]][None] != y[sample, None]
    visited = (other & (gap <= tau[:, None] * tiles.GUESS_MARGIN)).sum(1).double().mean()
    return float(visited) <= _VISITED_SHARE * len(radius)


def _tile_starts(starts: np.ndarray, first: int, stop: int, tile: int) -> np.ndarray:
    """Tiles of a block of rows first..stop: cut at cluster starts, at most `tile` rows each.
    Returns (T + 1,) int64 tile boundaries, relative to `first`."""
    b = stop - first
    cuts = starts[(starts > first) & (starts < stop)] - first
    tiles = [0]
    for cut in [*cuts.tolist(), b]:
        tiles.extend(range(tiles[-1] + tile, cut, tile))
        tiles.append(cut)
    return np.array(tiles, dtype=np.int64)


def _clustered_items(
    x: Tensor, starts: Tensor, coords: Tensor, coord_norms: Tensor, error: Tensor
) -> buffers.ClusteredItems:
    """The items, already in cluster order, as `_kernels.tiles.query_tiles` reads them."""
    blocks = torch.cat([coords[start:stop].T.reshape(-1)
                        for start, stop in pairwise(starts.tolist())])  # fmt: skip
    return buffers.ClusteredItems(
        squared_norms=x.square().sum(1).numpy(),
        coords=coords.numpy(),
        blocks=blocks.numpy(),
        coord_sq=coords.double().square().sum(1).numpy(),
        coord_norms=coord_norms.numpy(),
        error=error.numpy(),
        embeddings=x.numpy(),
    )


def clustered_blocks(
    x: Tensor,
    classes: list[tuple[int, int]],
    threads: int,
    clustering: tuple[Tensor, Tensor, Tensor, Tensor],
    coords: Tensor,
    coord_norms: Tensor,
    error: Tensor,
    slack: float,
) -> Iterator[tuple]:
    """(kernel, args, scratch per thread, out) per block of one class's queries: ranking on the
    principal axes, items grouped in clusters (`_kernels.clusters`, `_kernels.tiles`)."""
    from tripletlab.evaluation._kernels import tiles

    order, centres, radius, starts = clustering
    x, coords, coord_norms, error = (t[order].contiguous() for t in (x, coords, coord_norms, error))
    n, k = len(x), len(radius)
    sizes = starts.diff()
    items = _clustered_items(x, starts, coords, coord_norms, error)
    # The items' distances in full are float32 products too (rounding under (D + 3) * 2^-24 *
    # 4 * the largest squared norm): the bounds allow for that, three times over, so that no
    # item whose float32 distance lies within tau is ever left out.
    slack += 3 * (x.shape[1] + 3) * 4.0 * float(items.squared_norms.max()) * 2.0**-24
    clusters = buffers.Clusters(
        centre_sq=centres.square().sum(1).numpy(),
        radius=radius.numpy(),
        starts=starts.numpy(),
        largest_error=torch.segment_reduce(error, "max", lengths=sizes).numpy(),
    )
    largest = max(stop - start for start, stop in classes)
    scratch = [buffers.cluster_scratch(n, largest - 1, k, int(sizes.max()), coords.shape[1])
               for _ in range(threads)]  # fmt: skip
    step = max(1, min(BLOCK_ELEMENTS // max(largest, k), largest))
    whole = largest * largest <= 2 * BLOCK_ELEMENTS  # a class's products at once: symmetric
    same_buffer = torch.empty(largest * largest if whole else step * largest)
    centre_buffer = np.empty(step * k, dtype=np.float32)
    centres32 = centres.float().T.numpy()
    for start, stop in classes:
        if whole:
            products = symmetric_products(x[start:stop], same_buffer)
        for first in range(start, stop, step):
            block = slice(first, min(first + step, stop))
            b = block.stop - block.start
            if whole:
                same = products[block.start - start : block.stop - start]
            else:
                same = torch.mm(x[block], x[start:stop].T,
                                out=same_buffer[: b * (stop - start)].view(b, -1))  # fmt: skip
            # numpy's BLAS: 2.5 to 6 times faster than torch's on these thin (m = 16) products
            centre_dot = np.matmul(
                items.coords[block], centres32, out=centre_buffer[: b * k].reshape(b, k)
            )
            tile_start = _tile_starts(clusters.starts, block.start, block.stop, buffers.TILE)
            args = (same.numpy(), centre_dot, np.arange(block.start, block.stop), start, stop,
                    items, clusters, slack, tiles.GUESS_MARGIN, tile_start)  # fmt: skip
            yield tiles.query_tiles, args, scratch, np.empty((b, 3))
