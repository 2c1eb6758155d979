"""Named work arrays of the compiled passes: what the clustered pass reads about the items and
clusters, and each thread's scratch, allocated once per evaluation (numba takes these named
tuples of arrays as arguments, fields by name).

Kernels take the arrays out of these tuples into locals once per call, before their loops,
and give helpers called in a loop the arrays themselves: numba counts a reference (an atomic
operation) each time an array is taken out of a tuple. Done per chunk and tile query instead,
it made the clustered pass's kernels a third slower (5.45 s against 4.1 s on 60,000 x 256,
one thread).

The sizes below are compiled into the kernels of the other modules (BUCKETS, LANES) or read
when the scratch is made (TILE, FOUND, CHUNK). numba's cache only notices a change to the file
a kernel is defined in: after changing BUCKETS or LANES, delete `_kernels/__pycache__`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Buckets of the own-class distances (from 0 to the largest, or to a tile query's limit).
BUCKETS = 4096
# Queries of one tile at most (up to 64: one bit each), and found items kept per tile query
# (more: done alone). Read when the workspace is made.
TILE = 32
FOUND = 8192
# Items of the tile's wanted clusters ranked per pass (gathered axis after axis, so that each
# tile query's ranking distances are long vectorised loops), and the lanes they are checked by.
CHUNK = 256
LANES = 32


class ClusteredItems(NamedTuple):
    """The N items of the clustered pass, cluster after cluster, on m principal axes.

    The ranking distance is coord_norms[i] + coord_norms[j] - 2 coords[i] . coords[j], never
    below |coords[i] - coords[j]|^2, and |exact - ranking| <= error[i] * error[j] + slack.

    Attributes:
        squared_norms: (N,) float32 squared norms of the embeddings.
        coords: (N, m) float32 principal-axes coordinates.
        blocks: (N * m,) float32 the same, each cluster's axis after axis.
        coord_sq: (N,) float64 squared norms of `coords`.
        coord_norms: (N,) float32 squared norms of the centred items.
        error: (N,) float64 error bound of each item.
        embeddings: (N, D) float32 items, for distances in full.
    """

    squared_norms: np.ndarray
    coords: np.ndarray
    blocks: np.ndarray
    coord_sq: np.ndarray
    coord_norms: np.ndarray
    error: np.ndarray
    embeddings: np.ndarray


class Clusters(NamedTuple):
    """The K k-means clusters of the clustered pass; no cluster spans two classes.

    Attributes:
        centre_sq: (K,) float64 squared norms of the centres.
        radius: (K,) float64 largest distance of a member from its centre.
        starts: (K + 1,) int64 cluster k is items starts[k]..starts[k + 1].
        largest_error: (K,) float64 largest `error` of a member.
    """

    centre_sq: np.ndarray
    radius: np.ndarray
    starts: np.ndarray
    largest_error: np.ndarray


class QueryScratch(NamedTuple):
    """One thread's work arrays for one query at a time: the dense pass's scratch, and part of
    the clustered pass's. N items, R + 1 items in the largest class.

    Attributes:
        own_below: (BUCKETS + 1,) int64 own-class distances in buckets < b, so where bucket b
            starts in `own_grouped`.
        own_fill: (BUCKETS,) int64 next free place of each bucket while grouping.
        own_values: (R + 1,) float64 the query's own-class squared distances.
        own_grouped: (R + 1,) float64 the same (its own left out), bucket after bucket.
        found: (N,) float64 ranking distances of the other-class items found.
        found_index: (N,) int64 their item index.
        ahead: (R + 1,) int64 ahead[c]: found items with c own-class items closer.
    """

    own_below: np.ndarray
    own_fill: np.ndarray
    own_values: np.ndarray
    own_grouped: np.ndarray
    found: np.ndarray
    found_index: np.ndarray
    ahead: np.ndarray


class ClusterScratch(NamedTuple):
    """One thread's work arrays for the clustered pass: K clusters, m axes.

    Attributes:
        query: one query at a time (own distances, found items, counts ahead).
        other_histogram: (BUCKETS + 1,) int64 found other-class items per bucket.
        cluster_values: (largest cluster,) float32 one cluster's ranking distances.
        cluster_ends: (BUCKETS + 2,) int64 clusters by bucket of their bound: counts, then
            where each bucket ends in `cluster_order`.
        cluster_bucket: (K,) int64 bucket of each cluster's bound (-1: own class).
        cluster_order: (K,) int64 clusters in bucket order.
        tile_found: (TILE, FOUND) float64 each tile query's found items' distances in full.
        tile_index: (TILE, FOUND) int64 their item index.
        tile_count: (TILE,) int64 items each tile query found (may exceed FOUND).
        tile_limit: (TILE,) float64 each tile query's guessed tau.
        wanted: (K,) int64 bit g set: cluster k may hold an item within query g's guess.
        chain_head: (BUCKETS + 1,) int64 first found item of each bucket (-1: none).
        chain_next: (FOUND,) int64 next found item of the same bucket.
        own_closer: (FOUND,) int64 own-class items closer than each found item, within its
            bucket.
        own_histogram: (BUCKETS + 2,) int64 a tile query's own-class distances in buckets < b.
        chunk_clusters: (K,) int64 the wanted clusters, in order.
        chunk_coords: (m, chunk) float32 coordinates of a chunk's items, axis after axis.
        chunk_norms: (chunk,) float32 their `coord_norms`.
        chunk_error: (chunk,) float32 their `error`.
        chunk_items: (chunk,) int64 their item index.
        chunk_values: (chunk,) float32 one tile query's ranking distances to them, less its
            limit and error allowance.
        lanes: (TILE, m + 2) float32 each tile query's weights (-2 times its coordinates),
            coordinate norm less its limit, and error.
    """

    query: QueryScratch
    other_histogram: np.ndarray
    cluster_values: np.ndarray
    cluster_ends: np.ndarray
    cluster_bucket: np.ndarray
    cluster_order: np.ndarray
    tile_found: np.ndarray
    tile_index: np.ndarray
    tile_count: np.ndarray
    tile_limit: np.ndarray
    wanted: np.ndarray
    chain_head: np.ndarray
    chain_next: np.ndarray
    own_closer: np.ndarray
    own_histogram: np.ndarray
    chunk_clusters: np.ndarray
    chunk_coords: np.ndarray
    chunk_norms: np.ndarray
    chunk_error: np.ndarray
    chunk_items: np.ndarray
    chunk_values: np.ndarray
    lanes: np.ndarray


def query_scratch(items: int, relevant: int) -> QueryScratch:
    """Scratch for one thread running `rows.query_rows` (N items, R relevant at most)."""
    return QueryScratch(
        own_below=np.empty(BUCKETS + 1, dtype=np.int64),
        own_fill=np.empty(BUCKETS, dtype=np.int64),
        own_values=np.empty(relevant + 1, dtype=np.float64),
        own_grouped=np.empty(relevant + 1, dtype=np.float64),
        found=np.empty(items, dtype=np.float64),
        found_index=np.empty(items, dtype=np.int64),
        ahead=np.empty(relevant + 1, dtype=np.int64),
    )


def cluster_scratch(
    items: int, relevant: int, clusters: int, largest: int, axes: int
) -> ClusterScratch:
    """Scratch for one thread running `tiles.query_tiles`.

    Args:
        items, relevant: N items, R relevant at most.
        clusters, largest, axes: K clusters, the largest one's size, m principal axes.
    """
    chunk = -(-max(CHUNK, largest) // LANES) * LANES
    return ClusterScratch(
        query=query_scratch(items, relevant),
        other_histogram=np.empty(BUCKETS + 1, dtype=np.int64),
        cluster_values=np.empty(max(largest, 1), dtype=np.float32),
        cluster_ends=np.empty(BUCKETS + 2, dtype=np.int64),
        cluster_bucket=np.empty(clusters, dtype=np.int64),
        cluster_order=np.empty(clusters, dtype=np.int64),
        tile_found=np.empty((TILE, FOUND), dtype=np.float64),
        tile_index=np.empty((TILE, FOUND), dtype=np.int64),
        tile_count=np.empty(TILE, dtype=np.int64),
        tile_limit=np.empty(TILE, dtype=np.float64),
        wanted=np.empty(clusters, dtype=np.int64),
        chain_head=np.empty(BUCKETS + 1, dtype=np.int64),
        chain_next=np.empty(FOUND, dtype=np.int64),
        own_closer=np.empty(FOUND, dtype=np.int64),
        own_histogram=np.empty(BUCKETS + 2, dtype=np.int64),
        chunk_clusters=np.empty(clusters, dtype=np.int64),
        chunk_coords=np.empty((axes, chunk), dtype=np.float32),
        chunk_norms=np.empty(chunk, dtype=np.float32),
        chunk_error=np.empty(chunk, dtype=np.float32),
        chunk_items=np.empty(chunk, dtype=np.int64),
        chunk_values=np.empty(chunk, dtype=np.float32),
        lanes=np.empty((TILE, axes + 2), dtype=np.float32),
    )
