"""Per-query scoring shared by the compiled passes (numba).

The query's own-class distances are bucketed (`own_buckets`: sorted by bucket, for the dense
pass and a query done alone) or histogrammed (`own_histogram`: one pass, for a tile's
queries); each found other-class item within tau is counted against them, and the counts
"ahead" of each own rank give the metrics (`metrics_from_ahead`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from tripletlab.evaluation._kernels.buffers import BUCKETS

if TYPE_CHECKING:
    from tripletlab.evaluation._kernels.buffers import ClusterScratch, QueryScratch


@njit(cache=True, nogil=True)
def _bucket(value: float, scale: float) -> int:
    """Bucket of `value`, of width 1 / scale from 0, values past the last in the last."""
    b = int(value * scale)
    if b < 0:
        return 0
    if b >= BUCKETS:
        return BUCKETS - 1
    return b


@njit(cache=True, nogil=True, fastmath=True)
def _exact_squared(x: np.ndarray, a: int, b: int) -> float:
    """float64 squared distance of rows a and b of x."""
    total = 0.0
    for d in range(x.shape[1]):
        diff = np.float64(x[a, d]) - np.float64(x[b, d])
        total += diff * diff
    return total


@njit(cache=True, nogil=True)
def _count_below(value: float, strict: bool, scale: float, starts: np.ndarray, grouped):
    """Own-class distances below `value` (strictly or not), from the bucketed own distances."""
    b = _bucket(value, scale)
    count = starts[b]
    for g in range(starts[b], starts[b + 1]):
        if grouped[g] < value or (not strict and grouped[g] == value):
            count += 1
    return count


@njit(cache=True, nogil=True)
def own_buckets(same_dot, query, own_start, squared_norms, scratch: QueryScratch):
    """Bucket the query's own-class squared distances (its own column left out).

    Args:
        same_dot: (R + 1,) float32 the query's dot products with its class's items.
        query: its item index; own_start: its class's first item.
        squared_norms: (N,) float32 squared norms of the embeddings.
        scratch: own_values, own_below, own_grouped written (own_fill used).
    Returns:
        (scale, top): bucket b holds values in [b / scale, (b + 1) / scale), the last one
        also `top`, the largest; own_below[b] own distances lie in buckets < b, and
        own_grouped holds them bucket after bucket.
    """
    own_below, fill = scratch.own_below, scratch.own_fill
    own_values, grouped = scratch.own_values, scratch.own_grouped
    r = same_dot.shape[0] - 1
    own = query - own_start
    query_sq = squared_norms[query]
    top = 0.0
    for j in range(r + 1):
        value = query_sq + squared_norms[own_start + j] - np.float32(2.0) * same_dot[j]
        own_values[j] = value
        if j != own and value > top:
            top = value
    scale = BUCKETS / top if top > 0.0 else 0.0
    own_below[:] = 0
    for j in range(r + 1):
        if j != own:
            own_below[_bucket(own_values[j], scale) + 1] += 1
    for b in range(BUCKETS):
        own_below[b + 1] += own_below[b]
    fill[:] = own_below[:BUCKETS]
    for j in range(r + 1):
        if j != own:
            b = _bucket(own_values[j], scale)
            grouped[fill[b]] = own_values[j]
            fill[b] += 1
    return scale, top


@njit(cache=True, nogil=True)
def score_found(query, r, m, tau, exact, error, slack, embeddings, scale, scratch, out):
    """Place the m found other-class items (scratch.found, scratch.found_index: ranking
    distance and index) with a lower bound <= tau among the own-class distances bucketed by
    `own_buckets`, and write the query's P@1 hit, R-Precision and AP@R to out (3,).

    Ranking distances off by at most error[query] * error[item] + slack are settled by their
    bounds, or else by their exact distance from `embeddings`; `exact`: they are exact.
    """
    found, found_index, ahead = scratch.found, scratch.found_index, scratch.ahead
    own_below, grouped = scratch.own_below, scratch.own_grouped
    err_q = error[query]
    ahead[: r + 1] = 0
    for t in range(m):
        approx = found[t]
        if exact:
            if approx <= tau:
                ahead[_count_below(approx, True, scale, own_below, grouped)] += 1
            continue
        bound = err_q * error[found_index[t]] + slack
        if approx - bound > tau:
            continue
        below = _count_below(approx - bound, True, scale, own_below, grouped)
        if below >= r:  # ranks after the R-th own item whatever its exact distance
            continue
        if below != _count_below(approx + bound, False, scale, own_below, grouped):
            distance = _exact_squared(embeddings, query, found_index[t])
            below = _count_below(distance, True, scale, own_below, grouped)
        ahead[below] += 1
    metrics_from_ahead(ahead, r, out)


@njit(cache=True, nogil=True)
def metrics_from_ahead(ahead, r, out):
    """P@1 hit, R-Precision and AP@R from ahead[c] = how many other-class items have c
    own-class items closer: walking the own ranks k = 1..R, those with fewer than k closer
    rank before the k-th."""
    before = 0
    hits = 0
    precision_sum = 0.0
    first = 0.0
    for k in range(1, r + 1):
        before += ahead[k - 1]
        position = k + before
        if position > r:
            break
        if position == 1:
            first = 1.0
        hits = k
        precision_sum += k / position
    out[0] = first
    out[1] = hits / r
    out[2] = precision_sum / r


@njit(cache=True, nogil=True)
def _histogram_bucket(value: float, scale: float) -> int:
    """Bucket of `value` for `own_histogram`: BUCKETS for values at or past the last edge."""
    f = value * scale
    if f >= BUCKETS:
        return BUCKETS
    return max(int(f), 0)


@njit(cache=True, nogil=True)
def own_histogram(same_dot, query, own_start, squared_norms, scale, below, own_values):
    """The query's own-class squared distances in own_values (its own +inf) and
    below[b] = how many lie in buckets < b, buckets of width 1 / scale from 0 and the
    last, BUCKETS, holding all beyond. One pass; no grouping (see `score_histogram`)."""
    query_sq = squared_norms[query]
    below[:] = 0
    for j in range(same_dot.shape[0]):
        value = query_sq + squared_norms[own_start + j] - np.float32(2.0) * same_dot[j]
        own_values[j] = value
        below[_histogram_bucket(value, scale) + 1] += 1
    own = query - own_start
    below[_histogram_bucket(own_values[own], scale) + 1] -= 1
    own_values[own] = np.inf
    for b in range(BUCKETS + 1):
        below[b + 1] += below[b]


@njit(cache=True, nogil=True)
def proven_tau(found, m, scale, below, other_histogram, r):
    """The smallest bucket edge within which the own-class distances (histogram `below`,
    from `own_histogram`) and the m found items' distances number R; +inf if none does."""
    other_histogram[:] = 0
    for t in range(m):
        upper = found[t] * scale
        if upper < BUCKETS:
            other_histogram[max(int(upper), 0)] += 1
    within = 0
    for b in range(BUCKETS):
        within += other_histogram[b]
        if below[b + 1] + within >= r:
            return (b + 1) / scale * (1.0 + 1e-6)
    return np.inf


@njit(cache=True, nogil=True)
def score_histogram(found, m, tau, scale, own_values, r, below, scratch: ClusterScratch, out):
    """`score_found` for exact distances of found items with the own distances histogrammed
    (`own_histogram`): each found item within tau is chained to its bucket, and one pass
    over the own distances counts, for the items in its bucket, those it lies below."""
    ahead = scratch.query.ahead
    head, chain, closer = scratch.chain_head, scratch.chain_next, scratch.own_closer
    head[:] = -1
    for t in range(m):
        if found[t] <= tau:
            b = _histogram_bucket(found[t], scale)
            chain[t] = head[b]
            head[b] = t
            closer[t] = 0
    for i in range(r + 1):
        value = own_values[i]
        t = head[_histogram_bucket(value, scale)]
        while t >= 0:
            closer[t] += value < found[t]
            t = chain[t]
    ahead[: r + 1] = 0
    for t in range(m):
        if found[t] <= tau:
            ahead[below[_histogram_bucket(found[t], scale)] + closer[t]] += 1
    metrics_from_ahead(ahead, r, out)
