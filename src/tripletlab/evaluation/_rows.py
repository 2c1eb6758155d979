"""Compiled per-query pass of the retrieval metrics (numba): no row is sorted.

A query's metrics depend only on where items of other classes fall among the distances to
the R other items of its own class. With those at sorted squared distances S_(1..R), the k-th
ranks at p_k = k + c(k), where c(k) counts other-class items at distance <= S_(k) (ties rank
the other class first). Precision@1 is [c(1) = 0], R-Precision is K / R with K the number of
k with p_k <= R, and MAP@R is the sum over those k of k / p_k, divided by R.

Only other-class items at distance <= tau matter, for any tau with at least R items within it:
a vectorisable counting pass tries a few tau taken from the own-class distances, a second pass
collects the items under the smallest that holds. Rows may hold approximate squared distances
with a per-pair error bound (embeddings ranked on a few principal axes): items are then kept
by their lower bound, and their exact distance is computed from the full embeddings only when
an own-class distance lies within their bounds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_BUCKETS = 4096
# tau candidates: own-class ranks R - 4, R - 8, ..., R - 2^(LEVELS + 1); `_count_within` is
# written out for exactly ten.
_LEVELS = 10


def workspace(items: int, relevant: int) -> tuple[np.ndarray, ...]:
    """Scratch arrays for one thread running `query_rows`: allocated once per evaluation."""
    return (
        np.empty(_BUCKETS + 1, dtype=np.int64),
        np.empty(_BUCKETS, dtype=np.int64),
        np.empty(relevant + 1, dtype=np.float64),
        np.empty(relevant + 1, dtype=np.float64),
        np.empty(items, dtype=np.float64),
        np.empty(items, dtype=np.int64),
        np.empty(relevant + 1, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def query_rows(
    same_dot: np.ndarray,
    dot: np.ndarray,
    query_index: np.ndarray,
    own_start: int,
    own_stop: int,
    squared_norms: np.ndarray,
    coord_norms: np.ndarray,
    error: np.ndarray,
    slack: float,
    embeddings: np.ndarray,
    scratch: tuple,
    out: np.ndarray,
    first: int,
    step: int,
) -> None:
    """Per-query Precision@1, R-Precision and AP@R of rows first, first + step, ... of a block
    of queries of one class. Releases the GIL: threads can run disjoint rows.

    Args:
        same_dot: (B, R + 1) float32 dot products with the class's items (item columns
            own_start..own_stop); the query's own column is skipped.
        dot: (B, N) float32 dot products with all items in the ranking coordinates (the
            embeddings themselves, or their principal-axes coordinates).
        query_index: (B,) int64 item index of each query (own_start <= index < own_stop).
        own_start, own_stop: the class's item range.
        squared_norms: (N,) float32 squared norms of the embeddings.
        coord_norms: (N,) float32 norms giving the ranking distances coord_norms[i] +
            coord_norms[j] - 2 dot[i, j]; `squared_norms` itself for exact rows.
        error, slack: (N,) float64 and a scalar: |exact - ranking distance| <= error[i] *
            error[j] + slack; all zero when the ranking distances are exact.
        embeddings: (N, D) float32 items, for exact distances when the errors are not zero.
        scratch: from `workspace(N, R)`, one per thread.
        out: (B, 3) float64, written: P@1 hit, R-Precision, AP@R of each query.
        first, step: the rows this call handles.
    """
    same_counts, fill, own_values, grouped, found, found_index, ahead = scratch
    for i in range(first, dot.shape[0], step):
        _one_row(
            same_dot[i], dot[i], query_index[i], own_start, own_stop, squared_norms,
            coord_norms, error, slack, embeddings, same_counts, fill, own_values, grouped, found,
            found_index, ahead, out[i],
        )  # fmt: skip


@njit(cache=True, nogil=True)
def _bucket(value: float, scale: float) -> int:
    b = int(value * scale)
    if b < 0:
        return 0
    if b >= _BUCKETS:
        return _BUCKETS - 1
    return b


@njit(cache=True, nogil=True, fastmath=True)
def _exact_squared(x: np.ndarray, a: int, b: int) -> float:
    total = 0.0
    for d in range(x.shape[1]):
        diff = np.float64(x[a, d]) - np.float64(x[b, d])
        total += diff * diff
    return total


@njit(cache=True, nogil=True)
def _count_within(dot, coord_norms, error, coord_q, err_q, taus, within):
    """Add to within[l] the items whose upper bound is <= taus[l], l < 10. Written out, and
    indexed from 0 (no negative-index check), so that the compiler vectorises the pass."""
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 = taus[0], taus[1], taus[2], taus[3], taus[4], \
        taus[5], taus[6], taus[7], taus[8], taus[9]  # fmt: skip
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = 0
    for j in range(dot.shape[0]):
        upper = coord_q + coord_norms[j] - np.float32(2.0) * dot[j] + err_q * error[j]
        c0 += upper <= t0
        c1 += upper <= t1
        c2 += upper <= t2
        c3 += upper <= t3
        c4 += upper <= t4
        c5 += upper <= t5
        c6 += upper <= t6
        c7 += upper <= t7
        c8 += upper <= t8
        c9 += upper <= t9
    within[0] += c0
    within[1] += c1
    within[2] += c2
    within[3] += c3
    within[4] += c4
    within[5] += c5
    within[6] += c6
    within[7] += c7
    within[8] += c8
    within[9] += c9


@njit(cache=True, nogil=True)
def _collect(dot, coord_norms, error, coord_q, err_q, tau, offset, found, found_index, m):
    """Append the items whose lower bound is <= tau (their ranking distance and offset +
    index) to found / found_index from position m; returns the new length. Blocks of 64 are
    first counted in a vectorised pass; only blocks with a hit are scanned item by item."""
    for block in range(0, dot.shape[0], 64):
        d = dot[block : block + 64]
        norms = coord_norms[block : block + 64]
        errors = error[block : block + 64]
        hits = 0
        for j in range(d.shape[0]):
            hits += coord_q + norms[j] - np.float32(2.0) * d[j] - err_q * errors[j] <= tau
        if hits == 0:
            continue
        for j in range(d.shape[0]):
            approx = coord_q + norms[j] - np.float32(2.0) * d[j]
            if approx - err_q * errors[j] <= tau:
                found[m] = approx
                found_index[m] = offset + block + j
                m += 1
    return m


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
def _own_buckets(same_dot, query, own_start, squared_norms, same_counts, fill, own_values, grouped):
    """Bucket the query's own-class squared distances (its own column left out).

    Returns (scale, top): bucket b holds values in [b / scale, (b + 1) / scale), the last one
    also `top`, the largest; same_counts[b] own distances lie in buckets < b, and grouped
    holds them bucket after bucket."""
    r = same_dot.shape[0] - 1
    own = query - own_start
    query_sq = squared_norms[query]
    top = 0.0
    for j in range(r + 1):
        value = query_sq + squared_norms[own_start + j] - np.float32(2.0) * same_dot[j]
        own_values[j] = value
        if j != own and value > top:
            top = value
    scale = _BUCKETS / top if top > 0.0 else 0.0
    same_counts[:] = 0
    for j in range(r + 1):
        if j != own:
            same_counts[_bucket(own_values[j], scale) + 1] += 1
    for b in range(_BUCKETS):
        same_counts[b + 1] += same_counts[b]
    fill[:] = same_counts[:_BUCKETS]
    for j in range(r + 1):
        if j != own:
            b = _bucket(own_values[j], scale)
            grouped[fill[b]] = own_values[j]
            fill[b] += 1
    return scale, top


@njit(cache=True, nogil=True)
def _score(query, r, found, found_index, m, tau, exact, error, slack, embeddings, scale,
           same_counts, grouped, ahead, out):  # fmt: skip
    """Place the found other-class items (ranking distance and index) with a lower bound <= tau
    among the own-class distances and write the query's P@1 hit, R-Precision and AP@R."""
    err_q = error[query]
    ahead[: r + 1] = 0
    for t in range(m):
        approx = found[t]
        if exact:
            if approx <= tau:
                ahead[_count_below(approx, True, scale, same_counts, grouped)] += 1
            continue
        bound = err_q * error[found_index[t]] + slack
        if approx - bound > tau:
            continue
        below = _count_below(approx - bound, True, scale, same_counts, grouped)
        if below >= r:  # ranks after the R-th own item whatever its exact distance
            continue
        if below != _count_below(approx + bound, False, scale, same_counts, grouped):
            distance = _exact_squared(embeddings, query, found_index[t])
            below = _count_below(distance, True, scale, same_counts, grouped)
        ahead[below] += 1
    _walk(ahead, r, out)


@njit(cache=True, nogil=True)
def _walk(ahead, r, out):
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
def _one_row(
    same_dot, dot, query, own_start, own_stop, squared_norms, coord_norms, error, slack, embeddings,
    same_counts, fill, own_values, grouped, found, found_index, ahead, out,
):  # fmt: skip
    n = dot.shape[0]
    r = same_dot.shape[0] - 1
    scale, top = _own_buckets(same_dot, query, own_start, squared_norms, same_counts, fill,
                              own_values, grouped)  # fmt: skip
    # tau candidates: the upper edge of the bucket holding own rank R - 2^(l + 2), for levels
    # l = 0..LEVELS-1, and `top` (level -1) which always holds. Level l holds if the
    # other-class items surely within its tau make up the rest of R.
    taus = np.full(_LEVELS, -np.inf, dtype=np.float32)  # levels past rank 1 never hold
    own_within = np.zeros(_LEVELS, dtype=np.int64)
    if scale > 0.0:
        for level in range(_LEVELS):
            rank = r - (4 << level)
            if rank < 1:
                break
            b = np.searchsorted(same_counts[1:], rank)
            taus[level] = np.float32((b + 1) / scale * (1.0 + 1e-6))  # rounded up
            own_within[level] = same_counts[b + 1]
    coord_q = coord_norms[query]
    err_q = error[query]
    exact = err_q == 0.0 and slack == 0.0
    within = np.zeros(_LEVELS, dtype=np.int64)
    count_taus = taus.astype(np.float64) - slack
    for lo, hi in ((0, own_start), (own_stop, n)):
        _count_within(dot[lo:hi], coord_norms[lo:hi], error[lo:hi], coord_q, err_q, count_taus,
                      within)  # fmt: skip
    level = _LEVELS - 1
    while level >= 0 and own_within[level] + within[level] < r:
        level -= 1
    tau = taus[level] if level >= 0 else np.float32(top * (1.0 + 1e-6))
    # The other-class items that may lie within tau.
    m = 0
    for lo, hi in ((0, own_start), (own_stop, n)):
        m = _collect(dot[lo:hi], coord_norms[lo:hi], error[lo:hi], coord_q, err_q, tau + slack, lo,
                     found, found_index, m)  # fmt: skip
    _score(query, r, found, found_index, m, tau, exact, error, slack, embeddings, scale,
           same_counts, grouped, ahead, out)  # fmt: skip
