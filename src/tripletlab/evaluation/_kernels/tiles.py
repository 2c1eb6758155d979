"""Clustered pass, a tile at a time (numba): the queries of one cluster together.

The first query of a tile (the member nearest the centre) is done alone (`clusters`). The
others guess their tau from it (at most `GUESS_MARGIN` times it, and at most it moved by the
distance between the two queries: the R-th nearest distance is 1-Lipschitz in the distance in
full), and the clusters wanted by the tile are gathered a chunk at a time, axis after axis,
for each query wanting one of them to rank in long vectorised loops. The items a tile query
finds must prove a tau within its guess, else the query is redone alone: the result never
depends on the guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from tripletlab.evaluation._kernels.buffers import BUCKETS, LANES
from tripletlab.evaluation._kernels.clusters import full_distance, query_alone
from tripletlab.evaluation._kernels.scoring import own_histogram, proven_tau, score_histogram

if TYPE_CHECKING:
    from tripletlab.evaluation._kernels.buffers import ClusteredItems, Clusters, ClusterScratch

# Guessed tau of the tile's other queries relative to the first's (at most its distance
# bound). Trained MNIST embeddings: the ratio's 90th percentile is 1.06, its 99th 1.16.
GUESS_MARGIN = 1.1


@njit(cache=True, nogil=True)
def query_tiles(
    same_dot: np.ndarray,
    centre_dot: np.ndarray,
    query_index: np.ndarray,
    own_start: int,
    own_stop: int,
    items: ClusteredItems,
    clusters: Clusters,
    slack: float,
    guess_margin: float,
    tile_start: np.ndarray,
    scratch: ClusterScratch,
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
        items: the N items, cluster after cluster (`buffers.ClusteredItems`): |exact -
            ranking distance| <= error[i] * error[j] + slack.
        clusters: the K clusters (`buffers.Clusters`).
        slack: see `items`.
        guess_margin: a tile's other queries guess their tau as at most this times the first's.
        tile_start: (T + 1,) int64 rows of the tiles: tile t is rows tile_start[t]..[t + 1],
            queries of one cluster, at most TILE.
        scratch: from `buffers.cluster_scratch(N, R, K, largest cluster, m)`, one per thread.
        out: (B, 3) float64, written: P@1 hit, R-Precision, AP@R of each query.
        first, step: the tiles this call handles.
    """
    own = np.searchsorted(clusters.starts, np.array([own_start, own_stop]))
    widest = clusters.largest_error.max()
    for t in range(first, tile_start.shape[0] - 1, step):
        a, b = tile_start[t], tile_start[t + 1]
        tau = query_alone(same_dot[a], centre_dot[a], query_index[a], own_start, own[0], own[1],
                          items, clusters, slack, scratch, out[a])  # fmt: skip
        if b - a > 1:
            _tile_followers(same_dot, centre_dot, query_index, a, b, own_start, own[0], own[1],
                            items, clusters, slack, widest, tau * guess_margin, tau, scratch,
                            out)  # fmt: skip


@njit(cache=True, nogil=True, fastmath=True)
def _mark_wanted(cq, allowed, centre_dot, centre_sq, radius, g, wanted):
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
    """Smallest of values[c:c + LANES]."""
    smallest = values[c]
    for j in range(1, LANES):
        smallest = min(smallest, values[c + j])
    return smallest


@njit(cache=True, nogil=True)
def _tile_lanes(queries, items: ClusteredItems, slack, scratch: ClusterScratch):
    """scratch.lanes[g]: tile query g's weights (-2 times its coordinates), then its
    coordinate norm less its limit and slack, then its error."""
    coords, coord_norms, error = items.coords, items.coord_norms, items.error
    lanes, tile_limit = scratch.lanes, scratch.tile_limit
    axes = coords.shape[1]
    for g in range(queries.shape[0]):
        query = queries[g]
        for d in range(axes):
            lanes[g, d] = np.float32(-2.0) * coords[query, d]
        lanes[g, axes] = coord_norms[query] - np.float32(tile_limit[g] + slack)
        lanes[g, axes + 1] = error[query]


@njit(cache=True, nogil=True)
def _gather_chunk(i, used, items: ClusteredItems, cluster_starts, scratch: ClusterScratch):
    """Gather the wanted clusters chunk_clusters[i:used] into the chunk arrays while they fit
    (at least one). Returns (next i, items gathered n, the chunk's queries' bits); the chunk
    is padded to a multiple of LANES with items within no limit."""
    coord_norms, error, blocks = items.coord_norms, items.error, items.blocks
    chunk_coords, chunk_norms = scratch.chunk_coords, scratch.chunk_norms
    chunk_error, chunk_items = scratch.chunk_error, scratch.chunk_items
    chunk_clusters, wanted = scratch.chunk_clusters, scratch.wanted
    axes = items.coords.shape[1]
    capacity = scratch.chunk_values.shape[0]
    n = 0
    bits = np.int64(0)
    while i < used:
        k = chunk_clusters[i]
        start, stop = cluster_starts[k], cluster_starts[k + 1]
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
    for j in range(n, -(-n // LANES) * LANES):  # never within any limit
        chunk_norms[j] = 1e30
        chunk_error[j] = 0.0
        for d in range(axes):
            chunk_coords[d, j] = 0.0
    return i, n, bits


@njit(cache=True, nogil=True)
def _keep_chunk_hits(values, padded, chunk_items, query, squared_norms, embeddings, tile_found,
                     tile_index, g, m):  # fmt: skip
    """Tile query g's items of the chunk within its limit (values <= 0): their distance in full
    and index appended to tile_found[g] / tile_index[g] from position m, up to their width;
    returns the new count, all counted."""
    keep = tile_found.shape[1]
    for c in range(0, padded, LANES):
        if _lane_min(values, c) > 0.0:
            continue
        for j in range(c, c + LANES):
            if values[j] <= 0.0:
                if m < keep:
                    item = chunk_items[j]
                    tile_found[g, m] = full_distance(squared_norms, embeddings, query, item)
                    tile_index[g, m] = item
                m += 1
    return m


@njit(cache=True, nogil=True)
def _gather_tile_candidates(queries, items: ClusteredItems, cluster_starts, slack, scratch):
    """Collect, for each tile query g (item queries[g]), the items of the clusters wanted by
    the tile whose ranking distance less their error allowance is within its limit: their
    float32 distance in full goes to tile_found[g] (up to its width; tile_count[g] counts all).

    The wanted clusters (a bit set in `wanted`) are gathered a chunk at a time, their
    coordinates axis after axis, and each query wanting one of them ranks the whole chunk in
    long vectorised loops. The ranking distance less the limit and the allowance is summed in
    float32 in one go: m + 4 terms of at most 8.4 times the largest squared coordinate norm
    in all, which the slack's three times m + 3 terms of 4 times it cover."""
    squared_norms, embeddings, axes = items.squared_norms, items.embeddings, items.coords.shape[1]
    wanted, chunk_clusters, lanes = scratch.wanted, scratch.chunk_clusters, scratch.lanes
    coords, norms, errors = scratch.chunk_coords, scratch.chunk_norms, scratch.chunk_error
    values, chunk_items = scratch.chunk_values, scratch.chunk_items
    tile_found, tile_index, tile_count = scratch.tile_found, scratch.tile_index, scratch.tile_count
    _tile_lanes(queries, items, slack, scratch)
    used = 0
    for k in range(cluster_starts.shape[0] - 1):
        if wanted[k] != 0:
            chunk_clusters[used] = k
            used += 1
    i = 0
    while i < used:
        i, n, bits = _gather_chunk(i, used, items, cluster_starts, scratch)
        padded = -(-n // LANES) * LANES
        for g in range(queries.shape[0]):
            if not (bits >> g) & 1:
                continue
            _chunk_values(lanes[g, :axes], lanes[g, axes:], coords, norms, errors, padded, values)
            tile_count[g] = _keep_chunk_hits(values, padded, chunk_items, queries[g],
                                             squared_norms, embeddings, tile_found, tile_index,
                                             g, tile_count[g])  # fmt: skip


@njit(cache=True, nogil=True)
def _tile_limits(centre_dot, query_index, a, b, items, clusters, slack, widest, guess, anchor_tau,
                 scratch):  # fmt: skip
    """Each of rows a + 1..b's guessed tau (scratch.tile_limit), at most `guess` and at most
    row a's tau (`anchor_tau`) moved by the queries' distance, and the clusters it wants."""
    coords, coord_sq, error = items.coords, items.coord_sq, items.error
    centre_sq, radius = clusters.centre_sq, clusters.radius
    tile_limit, tile_count, wanted = scratch.tile_limit, scratch.tile_count, scratch.wanted
    anchor = query_index[a]
    reach = np.sqrt(max(anchor_tau, 0.0))
    # wanted[k] bit g: cluster k may hold an item within query g's guess. Test of
    # `_cluster_bound(...) <= limit` without a square root per pair, allowing the largest
    # member error of any cluster: |q - centre|^2 <= (sqrt(limit + allowance) + radius)^2.
    wanted[:] = 0
    for g in range(b - a - 1):
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
        tile_count[g] = 0
        _mark_wanted(coord_sq[query] - slack, limit + error[query] * widest + 2.0 * slack,
                     centre_dot[row], centre_sq, radius, g, wanted)  # fmt: skip


@njit(cache=True, nogil=True)
def _follower_scored(same_dot, query, g, own_start, squared_norms, r, scratch, out):
    """Score tile query g from the items it found, if they can be trusted: not more than
    kept, and proving a tau within its limit. Returns False (nothing written) otherwise."""
    found, count, limit = scratch.tile_found[g], scratch.tile_count[g], scratch.tile_limit[g]
    if count > found.shape[0]:  # too many to keep
        return False
    if not limit > 0.0:  # nothing to scale the buckets by
        return False
    scale = BUCKETS * (1.0 + 2e-6) / limit  # every bucket edge a tau can be is <= limit
    own_values, below = scratch.query.own_values, scratch.own_histogram
    own_histogram(same_dot, query, own_start, squared_norms, scale, below, own_values)
    tau = proven_tau(found, count, scale, below, scratch.other_histogram, r)
    if tau > limit:  # the guess was too small
        return False
    score_histogram(found, count, tau, scale, own_values, r, below, scratch, out)
    return True


@njit(cache=True, nogil=True)
def _tile_followers(
    same_dot, centre_dot, query_index, a, b, own_start, own_first, own_last, items, clusters,
    slack, widest, guess, anchor_tau, scratch, out,
):  # fmt: skip
    """Rows a + 1..b, guessing each tau as at most `guess` from row a's (`anchor_tau`);
    widest is the largest member error of any cluster. A row whose found items cannot be
    trusted (`_follower_scored`) is done alone."""
    _tile_limits(centre_dot, query_index, a, b, items, clusters, slack, widest, guess,
                 anchor_tau, scratch)  # fmt: skip
    scratch.wanted[own_first:own_last] = 0
    _gather_tile_candidates(query_index[a + 1 : b], items, clusters.starts, slack, scratch)
    squared_norms = items.squared_norms
    r = same_dot.shape[1] - 1
    for g in range(b - a - 1):
        row = a + 1 + g
        query = query_index[row]
        if not _follower_scored(same_dot[row], query, g, own_start, squared_norms, r, scratch,
                                out[row]):  # fmt: skip
            query_alone(same_dot[row], centre_dot[row], query, own_start, own_first, own_last,
                        items, clusters, slack, scratch, out[row])  # fmt: skip
