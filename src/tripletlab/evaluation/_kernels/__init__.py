"""Compiled (numba) per-query passes of the retrieval metrics: no row is sorted.

A query's metrics depend only on where other-class items fall among its R own-class distances
S_(1..R): the k-th ranks at p_k = k + c(k), c(k) counting other-class items at distance <=
S_(k) (ties rank the other class first). Precision@1 is [c(1) = 0], R-Precision K / R with K
the k with p_k <= R, MAP@R the sum over those k of k / p_k, over R (`scoring`). Only
other-class items within tau matter, tau any distance with R items within it. The dense pass
(`rows`) takes every item's ranking distance and proves tau by counting under a few
candidates; the clustered pass reads only the k-means clusters whose distance bound lies
within tau (`clusters`), a tile of one cluster's queries at a time (`tiles`). Ranking
distances on a few principal axes carry a per-pair error bound: close calls get their
distance in full. Work arrays are named tuples (`buffers`), one scratch per thread; the
kernels release the GIL. Compiled on first use, then cached (`cache=True`).
"""
