"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020), exact and chunked.

For every query, the other items are ranked by Euclidean distance with the query itself left
out; R is the number of other items of the query's class. Queries whose class has no other item
are skipped. Items of another class at the same distance as one of the query's class rank
first (a collapsed embedding scores 0, not 1). Paper: https://arxiv.org/abs/2003.08505

No row is sorted: a compiled pass per query finds a distance within which the R nearest lie
and counts, for each other-class item within it, how many own-class items are closer. The
dense pass (`_rows`) takes every item's distance; embeddings with a few dominant principal
axes whose classes are compact enough go through the clustered pass (`_clustered`), which
reads only the clusters of items that may lie within that distance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from queue import SimpleQueue

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

# Elements of one (queries x items) distance block; bounds memory whatever the data set size
# (128 MiB of float32). Measured on 60,000 x 256: 2^25 took 13.4 to 14.4 s, 2^23 17.5 to 20.1 s,
# 2^21 27.0 s, 2^27 14.0 s (bigger blocks make the products cheaper: 4.3 s against 5.5 s).
_BLOCK_ELEMENTS = 1 << 25
# Variance share allowed off the principal axes for ranking through them (see `_low_rank`).
_LOW_RANK_TAIL = 1e-4
# The clustered pass is used when queries would visit at most this share of the clusters
# (measured on 60,000 x 256: trained MNIST embeddings 0.11, 7-10 s against 10-16 s dense;
# overlapping Gaussian classes ~0.5, 31 s against 21 s), judged on _SAMPLE queries.
_VISITED_SHARE = 0.25
_SAMPLE = 128
# Items per k-means cluster of a class on the principal axes, and k-means iterations (on the
# default run's embeddings, 6 iterations: 0.55 s and 409 clusters read per query; 4: 0.37 s
# and 415; 3: 0.34 s and 420).
_CLUSTER_SIZE = 16
_KMEANS_STEPS = 4
# Parts of a block of queries per thread: threads take the next part as they finish one, so
# that an uneven split of the work (some queries cost several times others) leaves no thread
# idle for long before the next block.
_PARTS_PER_THREAD = 4


def _as_tensors(embeddings: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not torch.isfinite(x).all():
        raise ValueError("embeddings contain NaN or Inf")
    return x, y


def _squared_distances(queries: Tensor, items: Tensor, item_sq: Tensor) -> Tensor:
    """(q, D), (n, D) -> (q, n) squared Euclidean distances (ranking only needs the order)."""
    return torch.addmm(item_sq[None, :], queries, items.T, alpha=-2.0).add_(
        queries.square().sum(1, keepdim=True)
    )


def _low_rank(x: Tensor) -> tuple[Tensor, Tensor, Tensor, float] | None:
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
    step = max(1, _BLOCK_ELEMENTS // len(centres))
    return torch.cat([torch.cdist(points[first : first + step], centres).argmin(1)
                      for first in range(0, len(points), step)])  # fmt: skip


def _clusters(z: Tensor, stops: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
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
        centre = points[torch.randperm(len(points), generator=generator)[:k]].clone()
        for _ in range(_KMEANS_STEPS):
            nearest = _nearest(points, centre)
            sizes_k = torch.bincount(nearest, minlength=k)
            sums = torch.zeros_like(centre).index_add_(0, nearest, points)
            moved = sizes_k > 0  # an emptied cluster keeps its centre
            centre[moved] = sums[moved] / sizes_k[moved, None]
        nearest = _nearest(points, centre)
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
        # the query a tile starts from (`_clustered`).
        order.append(start + torch.from_numpy(np.lexsort((gap.numpy(), nearest.numpy()))))
        centres.append(centre64[kept])
        radius.append(reach[kept] * (1.0 + 1e-9))
        sizes.append(size[kept])
    starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cat(sizes).cumsum(0)])
    return torch.cat(order), torch.cat(centres), torch.cat(radius), starts


def _symmetric_products(x: Tensor, buffer: Tensor, band: int = 1024) -> Tensor:
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


def _dense_blocks(
    x: Tensor,
    classes: list[tuple[int, int]],
    threads: int,
    coords: Tensor,
    coord_norms: Tensor,
    error: Tensor,
    slack: float,
) -> Iterator[tuple]:
    """(kernel, args, scratch per thread, out) per block of one class's queries: every item's
    ranking distance (`_rows`). Exact when coords is x itself and error and slack are 0."""
    from tripletlab.evaluation import _rows  # numba: compiled on first use, then cached

    n = len(x)
    exact = coords is x
    largest = max(stop - start for start, stop in classes)
    x_sq = x.square().sum(1)
    scratch = [_rows.workspace(n, largest - 1) for _ in range(threads)]
    step = max(1, min(_BLOCK_ELEMENTS // n, largest))
    dot_buffer = torch.empty(step * n)
    for start, stop in classes:
        for first in range(start, stop, step):
            rows = slice(first, min(first + step, stop))
            b = rows.stop - rows.start
            dot = torch.mm(coords[rows], coords.T, out=dot_buffer[: b * n].view(b, n))
            # The products with the own class: part of `dot` when it is exact.
            same = dot[:, start:stop].contiguous() if exact else x[rows] @ x[start:stop].T
            args = (same.numpy(), dot.numpy(), np.arange(rows.start, rows.stop), start, stop,
                    x_sq.numpy(), coord_norms.numpy(), error.numpy(), slack, x.numpy())  # fmt: skip
            yield _rows.query_rows, args, scratch, np.empty((b, 3))


def _clusters_pay_off(
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
    from tripletlab.evaluation import _clustered

    order, centres, radius, starts = clustering
    n = len(x)
    relevant = torch.repeat_interleave(counts, counts) - 1  # (N,) R of each item
    sample = torch.linspace(0, n - 1, max(1, min(_SAMPLE, _BLOCK_ELEMENTS // n))).long()
    sample = sample[relevant[sample] > 0]
    if len(sample) == 0:  # nothing to judge by (almost every class a single item)
        return False
    x_sq = x.square().sum(1)
    squared = _squared_distances(x[sample], x, x_sq)
    squared[torch.arange(len(sample)), sample] = torch.inf
    tau = torch.stack([row.kthvalue(int(r)).values
                       for row, r in zip(squared, relevant[sample], strict=True)])  # fmt: skip
    gap = (torch.cdist(coords[sample].double(), centres) - radius).clamp_min(0).square()
    other = y[order][starts[:-1]][None] != y[sample, None]
    visited = (other & (gap <= tau[:, None] * _clustered.GUESS_MARGIN)).sum(1).double().mean()
    return float(visited) <= _VISITED_SHARE * len(radius)


def _clustered_blocks(
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
    principal axes, items grouped in clusters (`_clustered`)."""
    from tripletlab.evaluation import _clustered

    order, centres, radius, starts = clustering
    x, coords, coord_norms, error = (t[order].contiguous() for t in (x, coords, coord_norms, error))
    n, k = len(x), len(radius)
    sizes = starts.diff()
    blocks = torch.cat([coords[start:stop].T.reshape(-1)
                        for start, stop in pairwise(starts.tolist())])  # fmt: skip
    x_sq = x.square().sum(1)
    # The items' distances in full are float32 products too (rounding under (D + 3) * 2^-24 *
    # 4 * the largest squared norm): the bounds allow for that, three times over, so that no
    # item whose float32 distance lies within tau is ever left out.
    slack += 3 * (x.shape[1] + 3) * 4.0 * float(x_sq.max()) * 2.0**-24
    items = (x_sq.numpy(), coords.numpy(), blocks.numpy(),
             coords.double().square().sum(1).numpy(), coord_norms.numpy(), error.numpy(),
             x.numpy())  # fmt: skip
    clusters = (centres.square().sum(1).numpy(), radius.numpy(), starts.numpy(),
                torch.segment_reduce(error, "max", lengths=sizes).numpy())  # fmt: skip
    largest = max(stop - start for start, stop in classes)
    scratch = [_clustered.workspace(n, largest - 1, k, int(sizes.max()), coords.shape[1])
               for _ in range(threads)]  # fmt: skip
    step = max(1, min(_BLOCK_ELEMENTS // max(largest, k), largest))
    whole = largest * largest <= 2 * _BLOCK_ELEMENTS  # a class's products at once: symmetric
    same_buffer = torch.empty(largest * largest if whole else step * largest)
    centre_buffer = np.empty(step * k, dtype=np.float32)
    centres32 = centres.float().T.numpy()
    coords_np = coords.numpy()
    starts_np = starts.numpy()
    for start, stop in classes:
        if whole:
            products = _symmetric_products(x[start:stop], same_buffer)
        for first in range(start, stop, step):
            rows = slice(first, min(first + step, stop))
            b = rows.stop - rows.start
            if whole:
                same = products[rows.start - start : rows.stop - start]
            else:
                same = torch.mm(x[rows], x[start:stop].T,
                                out=same_buffer[: b * (stop - start)].view(b, -1))  # fmt: skip
            # numpy's BLAS: 2.5 to 6 times faster than torch's on these thin (m = 16) products
            centre_dot = np.matmul(
                coords_np[rows], centres32, out=centre_buffer[: b * k].reshape(b, k)
            )
            # Tiles: the block's rows cut at cluster starts, at most TILE rows each.
            cuts = starts_np[(starts_np > rows.start) & (starts_np < rows.stop)] - rows.start
            tiles = [0]
            for cut in [*cuts.tolist(), b]:
                tiles.extend(range(tiles[-1] + _clustered.TILE, cut, _clustered.TILE))
                tiles.append(cut)
            args = (same.numpy(), centre_dot, np.arange(rows.start, rows.stop), start,
                    stop, items, clusters, slack, _clustered.GUESS_MARGIN,
                    np.array(tiles, dtype=np.int64))  # fmt: skip
            yield _clustered.query_tiles, args, scratch, np.empty((b, 3))


def _run_part(
    kernel: Callable, args: tuple, free: SimpleQueue, out: np.ndarray, part: int, parts: int
) -> None:
    """Rows (or tiles) part, part + parts, ... of a block, with a scratch taken from `free`."""
    scratch = free.get()
    try:
        kernel(*args, scratch, out, part, parts)
    finally:
        free.put(scratch)


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R of every item queried against all the others.

    Exact; equal distances rank the other class first. Memory stays bounded (blocks of
    queries); embeddings whose variance lies in a few principal axes are ranked through those
    axes, by clusters of items where that pays, and only the items that may matter get their
    distance in full.

    Args:
        embeddings: (N, D) float.
        labels: (N,) integer class ids.
    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r` and `num_queries`.
    """
    x, y = _as_tensors(embeddings, labels)
    order = torch.argsort(y, stable=True)
    x, y = x[order].contiguous(), y[order]
    _, counts = torch.unique_consecutive(y, return_counts=True)
    if len(y) == 0 or int(counts.max()) < 2:
        raise ValueError("retrieval metrics need at least one class with two or more items")
    stops = counts.cumsum(0).tolist()
    threads = max(1, torch.get_num_threads())
    # numpy's BLAS (some products go through it) keeps its own pool: held to torch's threads.
    with threadpool_limits(threads, user_api="blas"):
        return _metrics(x, y, counts, stops, threads)


def _metrics(
    x: Tensor, y: Tensor, counts: Tensor, stops: list[int], threads: int
) -> dict[str, float]:
    """`retrieval_metrics` of x, y sorted by class (counts the class sizes, stops their ends)."""
    classes = [(start, stop) for start, stop in zip([0, *stops[:-1]], stops, strict=True)
               if stop - start > 1]  # a class of one item has no queries  # fmt: skip
    low_rank = _low_rank(x)
    if low_rank is None:  # rank on the exact distances
        zeros = torch.zeros(len(x), dtype=torch.float64)
        blocks = _dense_blocks(x, classes, threads, x, x.square().sum(1), zeros, 0.0)
    else:
        clustering = _clusters(low_rank[0], stops)
        if _clusters_pay_off(x, y, counts, low_rank[0], clustering):
            blocks = _clustered_blocks(x, classes, threads, clustering, *low_rank)
        else:
            blocks = _dense_blocks(x, classes, threads, *low_rank)
    sums = np.zeros(3)
    parts = _PARTS_PER_THREAD * threads
    with ThreadPoolExecutor(threads) as pool:
        for kernel, args, scratch, out in blocks:
            free = SimpleQueue()  # one scratch per running part
            for space in scratch:
                free.put(space)
            jobs = [pool.submit(_run_part, kernel, args, free, out, part, parts)
                    for part in range(parts)]  # fmt: skip
            for job in jobs:
                job.result()
            sums += out.sum(0)
    num_queries = int(counts[counts > 1].sum())
    return {
        "precision_at_1": float(sums[0] / num_queries),
        "r_precision": float(sums[1] / num_queries),
        "map_at_r": float(sums[2] / num_queries),
        "num_queries": num_queries,
    }


def knn_accuracy(
    query_embeddings: np.ndarray,
    query_labels: np.ndarray,
    reference_embeddings: np.ndarray,
    reference_labels: np.ndarray,
) -> float:
    """Share of queries whose nearest reference item (Euclidean) has the query's label.

    Args:
        query_embeddings: (Q, D), e.g. the test set.
        query_labels: (Q,).
        reference_embeddings: (M, D), e.g. the training set.
        reference_labels: (M,).
    """
    queries, query_y = _as_tensors(query_embeddings, query_labels)
    items, item_y = _as_tensors(reference_embeddings, reference_labels)
    if len(items) == 0 or len(queries) == 0:
        raise ValueError("k-NN accuracy needs at least one query and one reference item")
    item_sq = items.square().sum(1)
    correct = 0
    step = max(1, _BLOCK_ELEMENTS // len(items))
    for start in range(0, len(queries), step):
        block = slice(start, start + step)
        nearest = _squared_distances(queries[block], items, item_sq).argmin(1)
        correct += int((item_y[nearest] == query_y[block]).sum())
    return correct / len(queries)
