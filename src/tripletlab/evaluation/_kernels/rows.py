"""Dense pass (numba): each query's ranking distance to every item, no row sorted.

Only other-class items at distance <= tau matter, for any tau with at least R items within it:
a vectorisable counting pass tries a few tau taken from the own-class distances, a second pass
collects the items under the smallest that holds. Rows may hold approximate squared distances
with a per-pair error bound (embeddings ranked on a few principal axes): items are then kept
by their lower bound, and their exact distance is computed from the full embeddings only when
an own-class distance lies within their bounds (`scoring.score_found`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from tripletlab.evaluation._kernels.scoring import own_buckets, score_found

if TYPE_CHECKING:
    from tripletlab.evaluation._kernels.buffers import QueryScratch

# tau candidates: own-class ranks R - 4, R - 8, ..., R - 2^(LEVELS + 1); `_count_within` is
# written out for exactly ten.
_LEVELS = 10


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
    scratch: QueryScratch,
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
        scratch: from `buffers.query_scratch(N, R)`, one per thread.
        out: (B, 3) float64, written: P@1 hit, R-Precision, AP@R of each query.
        first, step: the rows this call handles.
    """
    for i in range(first, dot.shape[0], step):
        _query_row(
            same_dot[i], dot[i], query_index[i], own_start, own_stop, squared_norms,
            coord_norms, error, slack, embeddings, scratch, out[i],
        )  # fmt: skip


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
def _candidate_taus(own_below, r, scale):
    """tau candidates: the upper edge of the bucket holding own rank R - 2^(l + 2), for
    levels l = 0..LEVELS-1, and how many own-class distances lie within each."""
    taus = np.full(_LEVELS, -np.inf, dtype=np.float32)  # levels past rank 1 never hold
    own_within = np.zeros(_LEVELS, dtype=np.int64)
    if scale > 0.0:
        for level in range(_LEVELS):
            rank = r - (4 << level)
            if rank < 1:
                break
            b = np.searchsorted(own_below[1:], rank)
            taus[level] = np.float32((b + 1) / scale * (1.0 + 1e-6))  # rounded up
            own_within[level] = own_below[b + 1]
    return taus, own_within


@njit(cache=True, nogil=True)
def _row_tau(dot, query, own_start, own_stop, coord_norms, error, slack, r, scale, top, own_below):
    """The smallest candidate tau (`_candidate_taus`) proven by the other-class items surely
    within it making up the rest of R; `top`, the largest own distance, if none is."""
    n = dot.shape[0]
    taus, own_within = _candidate_taus(own_below, r, scale)
    coord_q = coord_norms[query]
    err_q = error[query]
    within = np.zeros(_LEVELS, dtype=np.int64)
    count_taus = taus.astype(np.float64) - slack
    for lo, hi in ((0, own_start), (own_stop, n)):
        _count_within(dot[lo:hi], coord_norms[lo:hi], error[lo:hi], coord_q, err_q, count_taus,
                      within)  # fmt: skip
    level = _LEVELS - 1
    while level >= 0 and own_within[level] + within[level] < r:
        level -= 1
    return taus[level] if level >= 0 else np.float32(top * (1.0 + 1e-6))


@njit(cache=True, nogil=True)
def _query_row(
    same_dot, dot, query, own_start, own_stop, squared_norms, coord_norms, error, slack, embeddings,
    scratch, out,
):  # fmt: skip
    """One query of `query_rows`: tau, the other-class items that may lie within it, scored."""
    n = dot.shape[0]
    r = same_dot.shape[0] - 1
    scale, top = own_buckets(same_dot, query, own_start, squared_norms, scratch)
    tau = _row_tau(dot, query, own_start, own_stop, coord_norms, error, slack, r, scale, top,
                   scratch.own_below)  # fmt: skip
    coord_q = coord_norms[query]
    err_q = error[query]
    exact = err_q == 0.0 and slack == 0.0
    found, found_index = scratch.found, scratch.found_index
    m = 0
    for lo, hi in ((0, own_start), (own_stop, n)):
        m = _collect(dot[lo:hi], coord_norms[lo:hi], error[lo:hi], coord_q, err_q, tau + slack, lo,
                     found, found_index, m)  # fmt: skip
    score_found(query, r, m, tau, exact, error, slack, embeddings, scale, scratch, out)
