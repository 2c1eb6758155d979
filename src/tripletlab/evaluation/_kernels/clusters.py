"""Clustered pass, one query alone (numba): the other-class clusters visited nearest first.

Each class's items are grouped in k-means clusters of about 16 on the principal axes; a
cluster whose centre lies at distance g from the query, with all its members within radius
rho of it, holds no item nearer than (g - rho)^2. A query reads only the other-class clusters
whose bound lies within its tau, and gives the items whose own lower bound does their distance
in full, computed as the own-class distances are (so every path gives the same value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from tripletlab.evaluation._kernels.buffers import BUCKETS
from tripletlab.evaluation._kernels.scoring import own_buckets, score_found

if TYPE_CHECKING:
    from tripletlab.evaluation._kernels.buffers import ClusteredItems, Clusters, ClusterScratch


@njit(cache=True, nogil=True, fastmath=True)
def _cluster_values(zq, coord_q, blocks, coord_norms, start, stop, values):
    """values[:stop - start] = ranking distances of the items start..stop of one cluster,
    whose coordinates are blocks[start * m:stop * m] axis after axis; vectorised over items.
    Returns the smallest."""
    count = stop - start
    for j in range(count):
        values[j] = coord_q + coord_norms[start + j]
    base = start * zq.shape[0]
    for d in range(zq.shape[0]):
        weight = np.float32(-2.0) * zq[d]
        row = blocks[base + d * count : base + (d + 1) * count]
        for j in range(count):
            values[j] += weight * row[j]
    smallest = values[0]
    for j in range(1, count):
        smallest = min(smallest, values[j])
    return smallest


@njit(cache=True, nogil=True, fastmath=True)
def _dot(x: np.ndarray, a: int, b: int) -> np.float32:
    """float32 dot product of rows a and b of x."""
    total = np.float32(0.0)
    for d in range(x.shape[1]):
        total += x[a, d] * x[b, d]
    return total


@njit(cache=True, nogil=True)
def full_distance(squared_norms: np.ndarray, embeddings: np.ndarray, a: int, b: int) -> np.float32:
    """float32 squared distance in full of items a and b, as the own-class distances are
    computed from their products: every path that finds an item gives it this value."""
    return squared_norms[a] + squared_norms[b] - np.float32(2.0) * _dot(embeddings, a, b)


@njit(cache=True, nogil=True)
def _cluster_bound(cq, err_q, slack, centre_dot, k, centre_sq, radius, largest_error):
    """Lower bound on the ranking distance minus error allowance of cluster k's items: twice
    the slack, once for their own bound, once for the float32 rounding of the products."""
    gap2 = cq + centre_sq[k] - 2.0 * np.float64(centre_dot[k]) - slack
    gap = max(np.sqrt(max(gap2, 0.0)) - radius[k], 0.0)
    return gap * gap - err_q * largest_error[k] - 2.0 * slack


@njit(cache=True, nogil=True)
def _order_clusters(query, centre_dot, own_first, own_last, scale, items, clusters, slack, scratch):
    """Sort the other-class clusters by bucket of their bound (bucket BUCKETS: beyond the
    largest own distance) in scratch.cluster_order, by counting: scratch.cluster_ends[b] is
    then where bucket b ends in it. Clusters own_first..own_last are the query's class."""
    ends, bucket, order = scratch.cluster_ends, scratch.cluster_bucket, scratch.cluster_order
    centre_sq, radius, largest_error = clusters.centre_sq, clusters.radius, clusters.largest_error
    cq, err_q = items.coord_sq[query], items.error[query]
    k_total = clusters.starts.shape[0] - 1
    ends[:] = 0
    for k in range(k_total):
        if own_first <= k < own_last:
            bucket[k] = -1
            continue
        bound = _cluster_bound(cq, err_q, slack, centre_dot, k, centre_sq, radius, largest_error)
        bound *= scale
        b = BUCKETS if bound >= BUCKETS else max(int(bound), 0)
        bucket[k] = b
        ends[b + 1] += 1
    for b in range(BUCKETS + 1):
        ends[b + 1] += ends[b]
    for k in range(k_total):
        b = bucket[k]
        if b >= 0:
            order[ends[b]] = k
            ends[b] += 1


@njit(cache=True, nogil=True)
def query_alone(
    same_dot, centre_dot, query, own_start, own_first, own_last, items: ClusteredItems,
    clusters: Clusters, slack, scratch: ClusterScratch, out,
):  # fmt: skip
    """One query alone, visiting the other-class clusters nearest first (by bound bucket)
    until the next one lies beyond the tau proven so far. Returns that tau.

    Args:
        same_dot: (R + 1,) float32 the query's dot products with its class's items.
        centre_dot: (K,) float32 its coordinates' dot products with the centres.
        query: its item index; own_start: its class's first item; own_first, own_last: its
            class's clusters.
        items, clusters, slack: see `tiles.query_tiles`.
        scratch: from `buffers.cluster_scratch`.
        out: (3,) float64, written: P@1 hit, R-Precision, AP@R.
    """
    squared_norms, blocks, coord_norms = items.squared_norms, items.blocks, items.coord_norms
    error, embeddings = items.error, items.embeddings
    starts, largest_error = clusters.starts, clusters.largest_error
    per_query = scratch.query
    own_below, found, found_index = per_query.own_below, per_query.found, per_query.found_index
    histogram, values = scratch.other_histogram, scratch.cluster_values
    ends, order = scratch.cluster_ends, scratch.cluster_order
    zq, coord_q, err_q = items.coords[query], coord_norms[query], error[query]
    r = same_dot.shape[0] - 1
    scale, top = own_buckets(same_dot, query, own_start, squared_norms, per_query)
    _order_clusters(query, centre_dot, own_first, own_last, scale, items, clusters, slack,
                    scratch)  # fmt: skip
    # tau, the upper edge of bucket `edge`, holds while the own distances and the other-class
    # items surely within (upper bound in buckets <= edge) number R; a bucket past edge + 1
    # lies beyond it. Kept in one piece: a helper called per cluster, given the named tuples,
    # made the clustered pass 4% slower (kernel time, one thread, 60,000 x 256: 5.45 s, 5.27 s).
    histogram[:] = 0
    edge = BUCKETS - 1
    within = 0
    tau = top * (1.0 + 1e-6)
    m = 0
    position = 0
    b = 0
    while b <= BUCKETS and (scale == 0.0 or b <= edge + 1):
        while position < ends[b]:
            k = order[position]
            position += 1
            start, stop = starts[k], starts[k + 1]
            smallest = _cluster_values(zq, coord_q, blocks, coord_norms, start, stop, values)
            if smallest - (err_q * largest_error[k] + slack) > tau:
                continue
            for j in range(stop - start):
                if values[j] - (err_q * error[start + j] + slack) > tau:
                    continue
                distance = full_distance(squared_norms, embeddings, query, start + j)
                found[m] = distance
                found_index[m] = start + j
                m += 1
                upper = distance * scale
                if upper < BUCKETS:
                    u = max(int(upper), 0)
                    histogram[u] += 1
                    within += u <= edge
            if scale > 0.0 and own_below[edge] + within - histogram[edge] >= r:
                while edge > 0 and own_below[edge] + within - histogram[edge] >= r:
                    within -= histogram[edge]
                    edge -= 1
                tau = (edge + 1) / scale * (1.0 + 1e-6)
        b += 1
    score_found(query, r, m, tau, True, error, slack, embeddings, scale, per_query, out)
    return tau
