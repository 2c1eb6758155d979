"""Compiled per-query pass of the retrieval metrics over small clusters of items (numba).

Used when the embeddings are ranked on a few principal axes (see `_rows`, whose scoring it
shares) and their classes are compact enough. Each class's items are grouped in k-means
clusters of about 16 on those axes; a cluster whose centre lies at distance g from the
query, with all its members within radius rho of it, holds no item nearer than (g - rho)^2.
A query reads only the other-class clusters whose bound lies within its tau, and gives the
items whose own lower bound does their distance in full, computed as the own-class distances
are (so every path gives the same value).

Queries go a tile at a time, the queries of one cluster. The first (the member nearest the
centre) is done alone, visiting clusters nearest first until the next one lies beyond the
tau proven so far. The others guess their tau from it (at most `guess_margin` times it, and
at most it moved by the distance between the two queries: the R-th nearest distance is
1-Lipschitz in the distance in full), and the clusters wanted by the tile are gathered a
chunk at a time, axis after axis, for each query wanting one of them to rank in long
vectorised loops. The items a tile query finds must prove a tau within its guess, else the
query is redone alone: the result never depends on the guess.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tripletlab.evaluation._rows import _BUCKETS, _own_buckets, _score, _walk
from tripletlab.evaluation._rows import workspace as _row_workspace

# Queries of one tile at most (up to 64: one bit each), and found items kept per tile query
# (more: done alone). Read when the workspace is made.
TILE = 32
FOUND = 8192
# Guessed tau of the tile's other queries relative to the first's (at most its distance
# bound). Trained MNIST embeddings: the ratio's 90th percentile is 1.06, its 99th 1.16.
GUESS_MARGIN = 1.1
# Items of the tile's wanted clusters ranked per pass (gathered axis after axis, so that each
# tile query's ranking distances are long vectorised loops), and the lanes they are checked by.
CHUNK = 256
_LANES = 32


def workspace(items: int, relevant: int, clusters: int, largest: int, axes: int) -> tuple:
    """Scratch arrays for one thread running `query_tiles`: allocated once per evaluation.

    0-6: `_rows.workspace` (own-distance buckets, found items, counts ahead); 7: other-class
    histogram; 8: one cluster's ranking distances; 9-11: clusters by bucket (counts, bucket,
    order); 12-16: the tile's found distances and items, their counts, guesses and wanted
    clusters (a bit per query); 17-19: found items chained by bucket (heads, links, counts);
    20: own-distance histogram; 21-27: a chunk of the tile's wanted clusters (their list, the
    coordinates axis after axis, squared coordinate norms, errors, items, ranking distances)
    and the tile queries' weights (-2 times their coordinates) and thresholds.
    """
    chunk = -(-max(CHUNK, largest) // _LANES) * _LANES
    return (
        *_row_workspace(items, relevant),
        np.empty(_BUCKETS + 1, dtype=np.int64),
        np.empty(max(largest, 1), dtype=np.float32),
        np.empty(_BUCKETS + 2, dtype=np.int64),
        np.empty(clusters, dtype=np.int64),
        np.empty(clusters, dtype=np.int64),
        np.empty((TILE, FOUND), dtype=np.float64),
        np.empty((TILE, FOUND), dtype=np.int64),
        np.empty(TILE, dtype=np.int64),
        np.empty(TILE, dtype=np.float64),
        np.empty(clusters, dtype=np.int64),
        np.empty(_BUCKETS + 1, dtype=np.int64),
        np.empty(FOUND, dtype=np.int64),
        np.empty(FOUND, dtype=np.int64),
        np.empty(_BUCKETS + 2, dtype=np.int64),
        np.empty(clusters, dtype=np.int64),
        np.empty((axes, chunk), dtype=np.float32),
        np.empty(chunk, dtype=np.float32),
        np.empty(chunk, dtype=np.float32),
        np.empty(chunk, dtype=np.int64),
        np.empty(chunk, dtype=np.float32),
        np.empty((TILE, axes + 2), dtype=np.float32),
    )


@njit(cache=True, nogil=True)
def query_tiles(
    same_dot: np.ndarray,
    centre_dot: np.ndarray,
    query_index: np.ndarray,
    own_start: int,
    own_stop: int,
    items: tuple,
    clusters: tuple,
    slack: float,
    guess_margin: float,
    tile_start: np.ndarray,
    scratch: tuple,
    out: np.ndarray,
    first: int,
    step: int,
) -> None:
    """Per-query Precision@1, R-Precision and AP@R of tiles first, first + step, ... of a
    block of queries of one class. Releases the GIL: threads can run disjoint tiles.

    Args:
        same_dot: (B, R + 1) float32 dot products with the class's items (own_start..own_stop).
        centre_dot: (B, K) float32 dot products of the queries' coordinates with the centres.
        query_index: (B,) int64 item index of each query.
        own_start, own_stop: the class's item range.
        items: (squared_norms (N,) float32, coords (N, m) float32 principal-axes
            coordinates, blocks (N * m,) float32 the same cluster after cluster, each cluster's
            axis after axis, coord_sq (N,) float64 their squared norms, coord_norms
            (N,) float32, error (N,) float64, embeddings (N, D) float32). The ranking distance
            is coord_norms[i] + coord_norms[j] - 2 coords[i] . coords[j], never below
            |coords[i] - coords[j]|^2, and |exact - ranking| <= error[i] * error[j] + slack.
        clusters: (centre_sq (K,) float64 squared norms of the centres, radius (K,) float64
            largest distance of a member from its centre, cluster_start (K + 1,) int64:
            cluster k is items cluster_start[k]..cluster_start[k + 1], no cluster spans two
            classes, cluster_error (K,) float64 largest `error` of a member).
        slack: see `items`.
        guess_margin: a tile's other queries guess their tau as at most this times the first's.
        tile_start: (T + 1,) int64 rows of the tiles: tile t is rows tile_start[t]..[t + 1],
            queries of one cluster, at most TILE.
        scratch: from `workspace(N, R, K, largest cluster, m)`, one per thread.
        out: (B, 3) float64, written: P@1 hit, R-Precision, AP@R of each query.
        first, step: the tiles this call handles.
    """
    cluster_start = clusters[2]
    own = np.searchsorted(cluster_start, np.array([own_start, own_stop]))
    widest = clusters[3].max()
    for t in range(first, tile_start.shape[0] - 1, step):
        a, b = tile_start[t], tile_start[t + 1]
        tau = _single(same_dot[a], centre_dot[a], query_index[a], own_start, own[0], own[1],
                      items, clusters, slack, scratch, out[a])  # fmt: skip
        if b - a > 1:
            _tile(same_dot, centre_dot, query_index, a, b, own_start, own[0], own[1], items,
                  clusters, slack, widest, tau * guess_margin, tau, scratch, out)  # fmt: skip


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
def _distance(squared_norms: np.ndarray, embeddings: np.ndarray, a: int, b: int) -> np.float32:
    """float32 squared distance in full of items a and b, as the own-class distances are
    computed from their products: every path that finds an item gives it this value."""
    return squared_norms[a] + squared_norms[b] - np.float32(2.0) * _dot(embeddings, a, b)


@njit(cache=True, nogil=True)
def _cluster_bound(cq, err_q, slack, centre_dot, k, clusters):
    """Lower bound on the ranking distance minus error allowance of cluster k's items: twice
    the slack, once for their own bound, once for the float32 rounding of the products."""
    centre_sq, radius, _, cluster_error = clusters
    gap2 = cq + centre_sq[k] - 2.0 * np.float64(centre_dot[k]) - slack
    gap = max(np.sqrt(max(gap2, 0.0)) - radius[k], 0.0)
    return gap * gap - err_q * cluster_error[k] - 2.0 * slack


@njit(cache=True, nogil=True)
def _prove(found, m, scale, same_counts, other_counts, r):
    """The smallest bucket edge within which the own-class distances (histogram
    `same_counts`) and the found items' distances number R; +inf if none does."""
    other_counts[:] = 0
    for t in range(m):
        upper = found[t] * scale
        if upper < _BUCKETS:
            other_counts[max(int(upper), 0)] += 1
    within = 0
    for b in range(_BUCKETS):
        within += other_counts[b]
        if same_counts[b + 1] + within >= r:
            return (b + 1) / scale * (1.0 + 1e-6)
    return np.inf


@njit(cache=True, nogil=True)
def _single(
    same_dot, centre_dot, query, own_start, own_first, own_last, items, clusters, slack, scratch,
    out,
):  # fmt: skip
    """One query alone, visiting the other-class clusters nearest first (by bound bucket)
    until the next one lies beyond the tau proven so far. Returns that tau."""
    squared_norms, coords, blocks, coord_sq, coord_norms, error, embeddings = items
    cluster_start = clusters[2]
    same_counts, fill, own_values, grouped, found, found_index, ahead = scratch[:7]
    other_counts, values, cluster_counts, cluster_bucket, cluster_order = scratch[7:12]
    r = same_dot.shape[0] - 1
    scale, top = _own_buckets(same_dot, query, own_start, squared_norms, same_counts, fill,
                              own_values, grouped)  # fmt: skip
    zq = coords[query]
    coord_q = coord_norms[query]
    err_q = error[query]
    cluster_error = clusters[3]
    # Clusters by bucket of their bound (bucket _BUCKETS: beyond `top`), in counting order.
    k_total = cluster_start.shape[0] - 1
    cluster_counts[:] = 0
    for k in range(k_total):
        if own_first <= k < own_last:
            cluster_bucket[k] = -1
            continue
        bound = _cluster_bound(coord_sq[query], err_q, slack, centre_dot, k, clusters) * scale
        b = _BUCKETS if bound >= _BUCKETS else max(int(bound), 0)
        cluster_bucket[k] = b
        cluster_counts[b + 1] += 1
    for b in range(_BUCKETS + 1):
        cluster_counts[b + 1] += cluster_counts[b]
    for k in range(k_total):
        b = cluster_bucket[k]
        if b >= 0:
            cluster_order[cluster_counts[b]] = k
            cluster_counts[b] += 1
    # cluster_counts[b] is now where bucket b ends in cluster_order. tau, the upper edge of
    # bucket `edge`, holds while the own distances and the other-class items surely within
    # (upper bound in buckets <= edge) number R; a bucket past edge + 1 lies beyond it.
    other_counts[:] = 0
    edge = _BUCKETS - 1
    within = 0
    tau = top * (1.0 + 1e-6)
    m = 0
    position = 0
    b = 0
    while b <= _BUCKETS and (scale == 0.0 or b <= edge + 1):
        while position < cluster_counts[b]:
            k = cluster_order[position]
            position += 1
            start, stop = cluster_start[k], cluster_start[k + 1]
            smallest = _cluster_values(zq, coord_q, blocks, coord_norms, start, stop, values)
            if smallest - (err_q * cluster_error[k] + slack) > tau:
                continue
            for j in range(stop - start):
                if values[j] - (err_q * error[start + j] + slack) > tau:
                    continue
                distance = _distance(squared_norms, embeddings, query, start + j)
                found[m] = distance
                found_index[m] = start + j
                m += 1
                upper = distance * scale
                if upper < _BUCKETS:
                    u = max(int(upper), 0)
                    other_counts[u] += 1
                    within += u <= edge
            if scale > 0.0 and same_counts[edge] + within - other_counts[edge] >= r:
                while edge > 0 and same_counts[edge] + within - other_counts[edge] >= r:
                    within -= other_counts[edge]
                    edge -= 1
                tau = (edge + 1) / scale * (1.0 + 1e-6)
        b += 1
    _score(query, r, found, found_index, m, tau, True, error, slack, embeddings, scale,
           same_counts, grouped, ahead, out)  # fmt: skip
    return tau


@njit(cache=True, nogil=True)
def _histogram_bucket(value: float, scale: float) -> int:
    """Bucket of `value` for `_own_histogram`: _BUCKETS for values at or past the last edge."""
    f = value * scale
    if f >= _BUCKETS:
        return _BUCKETS
    return max(int(f), 0)


@njit(cache=True, nogil=True)
def _own_histogram(same_dot, query, own_start, squared_norms, scale, same_counts, own_values):
    """The query's own-class squared distances in own_values (its own +inf) and
    same_counts[b] = how many lie in buckets < b, buckets of width 1 / scale from 0 and the
    last, _BUCKETS, holding all beyond. One pass; no grouping (see `_score_histogram`)."""
    query_sq = squared_norms[query]
    same_counts[:] = 0
    for j in range(same_dot.shape[0]):
        value = query_sq + squared_norms[own_start + j] - np.float32(2.0) * same_dot[j]
        own_values[j] = value
        same_counts[_histogram_bucket(value, scale) + 1] += 1
    own = query - own_start
    same_counts[_histogram_bucket(own_values[own], scale) + 1] -= 1
    own_values[own] = np.inf
    for b in range(_BUCKETS + 1):
        same_counts[b + 1] += same_counts[b]


@njit(cache=True, nogil=True)
def _score_histogram(found, m, tau, scale, own_values, r, same_counts, scratch, out):
    """`_score` for exact distances of found items with the own distances histogrammed
    (`_own_histogram`): each found item within tau is chained to its bucket, and one pass
    over the own distances counts, for the items in its bucket, those it lies below."""
    ahead = scratch[6]
    head, chain, extra = scratch[17:20]
    head[:] = -1
    for t in range(m):
        if found[t] <= tau:
            b = _histogram_bucket(found[t], scale)
            chain[t] = head[b]
            head[b] = t
            extra[t] = 0
    for i in range(r + 1):
        value = own_values[i]
        t = head[_histogram_bucket(value, scale)]
        while t >= 0:
            extra[t] += value < found[t]
            t = chain[t]
    ahead[: r + 1] = 0
    for t in range(m):
        if found[t] <= tau:
            ahead[same_counts[_histogram_bucket(found[t], scale)] + extra[t]] += 1
    _walk(ahead, r, out)


@njit(cache=True, nogil=True, fastmath=True)
def _want(cq, allowed, centre_dot, centre_sq, radius, g, wanted):
    """Set bit g of wanted[k] where |q - centre k|^2 (cq + centre_sq - 2 centre_dot, cq
    lowered by the slack) is at most (sqrt(allowed) + radius[k])^2; vectorised over k."""
    reach = np.sqrt(max(allowed, 0.0))
    for k in range(radius.shape[0]):
        gap2 = cq + centre_sq[k] - 2.0 * np.float64(centre_dot[k])
        far = reach + radius[k]
        wanted[k] |= np.int64(gap2 <= far * far * (1.0 + 1e-9)) << g


@njit(cache=True, nogil=True, fastmath=True)
def _chunk_values(weights, base, coords, coord_norms, error, n, values):
    """values[:n] = base[0] + coord_norms - base[1] * error + sum_d weights[d] * coords[d]:
    one tile query's ranking distances to n gathered items less its error allowance; coords
    (m, chunk) axis after axis, m a multiple of 8 (axes taken eight at a time: one load and
    store of `values` per eight products)."""
    for j in range(n):
        values[j] = base[0] + coord_norms[j] - base[1] * error[j]
    for d in range(0, weights.shape[0], 8):
        w0, w1, w2, w3 = weights[d], weights[d + 1], weights[d + 2], weights[d + 3]
        w4, w5, w6, w7 = weights[d + 4], weights[d + 5], weights[d + 6], weights[d + 7]
        r0, r1, r2, r3 = coords[d], coords[d + 1], coords[d + 2], coords[d + 3]
        r4, r5, r6, r7 = coords[d + 4], coords[d + 5], coords[d + 6], coords[d + 7]
        for j in range(n):
            values[j] += (w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j]
                          + w4 * r4[j] + w5 * r5[j] + w6 * r6[j] + w7 * r7[j])  # fmt: skip


@njit(cache=True, nogil=True, fastmath=True)
def _lane_min(values, c):
    """Smallest of values[c:c + _LANES]."""
    smallest = values[c]
    for j in range(1, _LANES):
        smallest = min(smallest, values[c + j])
    return smallest


@njit(cache=True, nogil=True)
def _read_tile(queries, items, cluster_start, slack, scratch):
    """Collect, for each tile query g (item queries[g]), the items of the clusters wanted by
    the tile whose ranking distance less their error allowance is within its limit: their
    float32 distance in full goes to tile_found[g] (up to its width; tile_m[g] counts all).

    The wanted clusters (a bit set in `wanted`) are gathered a chunk at a time, their
    coordinates axis after axis, and each query wanting one of them ranks the whole chunk in
    long vectorised loops. The ranking distance less the limit and the allowance is summed in
    float32 in one go: m + 4 terms of at most 8.4 times the largest squared coordinate norm
    in all, which the slack's three times m + 3 terms of 4 times it cover."""
    squared_norms, coords, blocks, _, coord_norms, error, embeddings = items
    tile_found, tile_index, tile_m, tile_limit, wanted = scratch[12:17]
    union, chunk_coords, chunk_norms, chunk_error, chunk_items, values, lanes = scratch[21:28]
    count = queries.shape[0]
    axes = coords.shape[1]
    capacity = values.shape[0]
    keep = tile_found.shape[1]
    for g in range(count):  # weights, then base (coord norm less the limit), error
        query = queries[g]
        for d in range(axes):
            lanes[g, d] = np.float32(-2.0) * coords[query, d]
        lanes[g, axes] = coord_norms[query] - np.float32(tile_limit[g] + slack)
        lanes[g, axes + 1] = error[query]
    used = 0
    for k in range(cluster_start.shape[0] - 1):
        if wanted[k] != 0:
            union[used] = k
            used += 1
    i = 0
    while i < used:
        n = 0
        bits = np.int64(0)
        while i < used:
            k = union[i]
            start, stop = cluster_start[k], cluster_start[k + 1]
            size = stop - start
            if n + size > capacity:
                break
            base = start * axes
            for d in range(axes):
                chunk_coords[d, n : n + size] = blocks[base + d * size : base + (d + 1) * size]
            for j in range(size):
                chunk_norms[n + j] = coord_norms[start + j]
                chunk_error[n + j] = error[start + j]
                chunk_items[n + j] = start + j
            n += size
            bits |= wanted[k]
            i += 1
        padded = -(-n // _LANES) * _LANES
        for j in range(n, padded):  # never within any limit
            chunk_norms[j] = 1e30
            chunk_error[j] = 0.0
            for d in range(axes):
                chunk_coords[d, j] = 0.0
        for g in range(count):
            if not (bits >> g) & 1:
                continue
            _chunk_values(lanes[g, :axes], lanes[g, axes:], chunk_coords, chunk_norms,
                          chunk_error, padded, values)  # fmt: skip
            query = queries[g]
            m = tile_m[g]
            for c in range(0, padded, _LANES):
                if _lane_min(values, c) > 0.0:
                    continue
                for j in range(c, c + _LANES):
                    if values[j] <= 0.0:
                        if m < keep:
                            item = chunk_items[j]
                            tile_found[g, m] = _distance(squared_norms, embeddings, query, item)
                            tile_index[g, m] = item
                        m += 1
            tile_m[g] = m


@njit(cache=True, nogil=True)
def _tile(
    same_dot, centre_dot, query_index, a, b, own_start, own_first, own_last, items, clusters,
    slack, widest, guess, anchor_tau, scratch, out,
):  # fmt: skip
    """Rows a + 1..b, guessing each tau as at most `guess` from row a's (`anchor_tau`);
    widest is the largest member error of any cluster."""
    squared_norms, coords, _, coord_sq, _, error, _ = items
    own_values = scratch[2]
    other_counts = scratch[7]
    tile_found, _, tile_m, tile_limit, wanted = scratch[12:17]
    same_counts = scratch[20]
    centre_sq, radius, cluster_start, _ = clusters
    count = b - a - 1
    keep = tile_found.shape[1]
    anchor = query_index[a]
    reach = np.sqrt(max(anchor_tau, 0.0))
    # wanted[k] bit g: cluster k may hold an item within query g's guess. Test of
    # `_cluster_bound(...) <= limit` without a square root per pair, allowing the largest
    # member error of any cluster: |q - centre|^2 <= (sqrt(limit + allowance) + radius)^2.
    wanted[:] = 0
    for g in range(count):
        row = a + 1 + g
        query = query_index[row]
        shift = 0.0
        for d in range(coords.shape[1]):
            diff = np.float64(coords[query, d]) - coords[anchor, d]
            shift += diff * diff
        # The queries' distance in full: the residuals off the axes add at most
        # (|r_g| + |r_anchor|)^2, error being sqrt(2) |r|.
        shift += (error[query] + error[anchor]) ** 2 / 2.0
        limit = min((reach + np.sqrt(shift)) ** 2 * 1.001, guess)
        tile_limit[g] = limit
        tile_m[g] = 0
        _want(coord_sq[query] - slack, limit + error[query] * widest + 2.0 * slack,
              centre_dot[row], centre_sq, radius, g, wanted)  # fmt: skip
    wanted[own_first:own_last] = 0
    _read_tile(query_index[a + 1 : b], items, cluster_start, slack, scratch)
    r = same_dot.shape[1] - 1
    for g in range(count):
        row = a + 1 + g
        query = query_index[row]
        if tile_m[g] > keep:  # too many to keep: alone
            _single(same_dot[row], centre_dot[row], query, own_start, own_first, own_last, items,
                    clusters, slack, scratch, out[row])  # fmt: skip
            continue
        limit = tile_limit[g]
        if not limit > 0.0:  # nothing to scale the buckets by
            _single(same_dot[row], centre_dot[row], query, own_start, own_first, own_last, items,
                    clusters, slack, scratch, out[row])  # fmt: skip
            continue
        scale = _BUCKETS * (1.0 + 2e-6) / limit  # every bucket edge a tau can be is <= limit
        _own_histogram(same_dot[row], query, own_start, squared_norms, scale, same_counts,
                       own_values)  # fmt: skip
        tau = _prove(tile_found[g], tile_m[g], scale, same_counts, other_counts, r)
        if tau > limit:  # the guess was too small: alone
            _single(same_dot[row], centre_dot[row], query, own_start, own_first, own_last, items,
                    clusters, slack, scratch, out[row])  # fmt: skip
            continue
        _score_histogram(tile_found[g], tile_m[g], tau, scale, own_values, r, same_counts,
                         scratch, out[row])  # fmt: skip
