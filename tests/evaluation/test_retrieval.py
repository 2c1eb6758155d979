from __future__ import annotations

import numpy as np
import pytest
import torch

import tripletlab.evaluation.retrieval as retrieval
from tripletlab.evaluation import _blocks, _principal, knn_accuracy, retrieval_metrics
from tripletlab.evaluation._kernels import buffers, tiles


def test_hand_worked_example():
    # Points on a line; class a = {0, 1, 5}, class b = {2, 3}.
    embeddings = np.array([[0.0], [1.0], [10.0], [11.0], [3.0]])
    labels = np.array([0, 0, 1, 1, 0])
    # Query 0 (a, R=2): neighbours 1(a) 3.0->idx4(a) -> hits 1,1: P@1 1, RP 1, AP 1.
    # Query 1 (a, R=2): neighbours 0(a), 4(a) -> 1, 1, 1.
    # Query 2 (b, R=1): neighbour 3(b) -> 1, 1, 1.
    # Query 3 (b, R=1): neighbour 2(b) -> 1, 1, 1.
    # Query 4 (a, R=2): neighbours 1 (d=2, a), 0 (d=3, a) -> 1, 1, 1.
    metrics = retrieval_metrics(embeddings, labels)
    assert metrics == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0, "num_queries": 5}


def test_hand_worked_example_with_mistakes():
    # Class a = {0, 2, 4}, class b = {1, 3}; positions on a line.
    embeddings = np.array([[0.0], [1.0], [2.5], [3.6], [10.0]])
    labels = np.array([0, 1, 0, 1, 0])
    # q0 a R=2: order 1(b) 2(a) -> hits [0,1]: P@1 0, RP 1/2, AP (0 + 1/2)/2 = 0.25
    # q1 b R=1: order 0(a) d=1 vs 2(a) d=1.5 -> [0]: 0, 0, 0
    # q2 a R=2: order 3(b) d=1.1, 1(b) d=1.5 -> [0,0]: 0, 0, 0
    # q3 b R=1: order 2(a) d=1.1 -> [0]: 0, 0, 0
    # q4 a R=2: order 3(b) d=6.4, 2(a) d=7.5 -> [0,1]: 0, 1/2, 0.25
    metrics = retrieval_metrics(embeddings, labels)
    assert metrics["precision_at_1"] == 0.0
    assert metrics["r_precision"] == pytest.approx((0.5 + 0.5) / 5)
    assert metrics["map_at_r"] == pytest.approx((0.25 + 0.25) / 5)


def _brute_force(embeddings, labels):
    squared = np.square(embeddings).sum(1)
    dist = squared[:, None] + squared[None] - 2 * embeddings @ embeddings.T  # ranks as distance
    p1, rp, mapr, count = [], [], [], 0
    for q in range(len(labels)):
        r = int(np.sum(labels == labels[q])) - 1
        if r == 0:
            continue
        count += 1
        same = labels == labels[q]
        # Equal distances: the other class first (np.lexsort sorts by the last key first).
        order = np.lexsort((same, dist[q]))
        order = order[order != q][:r]
        hits = (labels[order] == labels[q]).astype(float)
        p1.append(hits[0])
        rp.append(hits.sum() / r)
        mapr.append(np.sum(np.cumsum(hits) / np.arange(1, r + 1) * hits) / r)
    return np.mean(p1), np.mean(rp), np.mean(mapr), count


def test_chunked_metrics_equal_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    labels[0] = 99  # a singleton class: not a query
    embeddings = rng.normal(size=(300, 8)) + labels[:, None] % 3
    monkeypatch.setattr(_blocks, "BLOCK_ELEMENTS", 300 * 7)  # many small blocks
    metrics = retrieval_metrics(embeddings, labels)
    p1, rp, mapr, count = _brute_force(embeddings, labels)
    assert metrics["num_queries"] == count == 299
    assert metrics["precision_at_1"] == pytest.approx(p1)
    assert metrics["r_precision"] == pytest.approx(rp)
    assert metrics["map_at_r"] == pytest.approx(mapr)


def _on_grid(x):
    """Round to multiples of 2^-8: float32 then computes these distances exactly, so equal
    distances are equal in both implementations and float64 is a fair reference."""
    x = (np.round(np.clip(x, -1.99, 1.99) * 256) / 256).astype(np.float32)
    t = torch.from_numpy(x)
    float32 = (t.square().sum(1)[:, None] + t.square().sum(1)[None] - 2 * t @ t.T).numpy()
    x64 = x.astype(np.float64)  # exact: every product and sum is a multiple of 2^-16 < 2^10
    float64 = np.square(x64).sum(1)[:, None] + np.square(x64).sum(1)[None] - 2 * x64 @ x64.T
    assert np.array_equal(float32, float64)
    return x


def test_small_sets_with_small_classes_take_the_top_k_path(monkeypatch):
    from tripletlab.evaluation import _topk

    taken = []
    real = _topk.topk_metrics
    monkeypatch.setattr(_topk, "topk_metrics", lambda *a: taken.append(1) or real(*a))
    engine = _pass_taken(monkeypatch)
    embeddings, labels = _low_rank_classes(600, 12, 1.0, seed=3)  # classes of about 50
    _assert_equal_to_brute_force(embeddings, labels)
    retrieval_metrics(embeddings, labels)  # auto
    assert len(taken) == 2 and len(engine) == 1  # topk twice, the engine once (asked for)


def _assert_equal_to_brute_force(embeddings, labels):
    """Both paths, the compiled engine and the top-k search through tripletlab.index, against
    NumPy; returns the engine's metrics."""
    p1, rp, mapr, count = _brute_force(embeddings.astype(np.float64), labels)
    found = {}
    for method in ("engine", "topk"):
        metrics = found[method] = retrieval_metrics(embeddings, labels, method)
        assert metrics["num_queries"] == count
        assert metrics["precision_at_1"] == pytest.approx(p1, abs=1e-12)
        assert metrics["r_precision"] == pytest.approx(rp, abs=1e-12)
        assert metrics["map_at_r"] == pytest.approx(mapr, abs=1e-12)
    return found["engine"]


@pytest.mark.parametrize("spread", [0.5, 2.0])  # overlapping classes, separated classes
@pytest.mark.parametrize("share", [-1.0, 1.0], ids=["dense", "clustered"])
def test_low_rank_embeddings_ranked_through_principal_axes_equal_brute_force(
    monkeypatch, spread, share
):
    # 64-d embeddings with 6 informative axes and a little noise on the rest, as trained
    # embeddings look: ranked on a few principal axes (every item: close calls recomputed in
    # full; or by clusters), whichever pass the data would get.
    monkeypatch.setattr(_blocks, "_VISITED_SHARE", share)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 900)
    centres = rng.normal(size=(7, 6)) * spread
    axes = np.linalg.qr(rng.normal(size=(64, 6)))[0].T  # (6, 64) orthonormal
    embeddings = _on_grid(0.5 * (centres[labels] + rng.normal(size=(900, 6))) @ axes)
    assert _principal.low_rank(torch.from_numpy(embeddings)) is not None
    metrics = _assert_equal_to_brute_force(embeddings, labels)
    assert 0.05 < metrics["map_at_r"] < 0.99  # neither trivial nor empty


def _low_rank_classes(n, classes, spread, seed, scale=0.3):
    """(n, 64) embeddings on 6 informative axes, `classes` classes plus one singleton."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    labels[0] = classes  # a class of one: never a query, still a neighbour of others
    centres = rng.normal(size=(classes + 1, 6)) * spread
    axes = np.linalg.qr(rng.normal(size=(64, 6)))[0].T
    embeddings = _on_grid(scale * (centres[labels] + rng.normal(size=(n, 6))) @ axes)
    assert _principal.low_rank(torch.from_numpy(embeddings)) is not None
    return embeddings, labels


def _pass_taken(monkeypatch):
    """Records which pass (`dense_blocks` or `clustered_blocks`) ranks the next data."""
    taken = []
    for name in ("dense_blocks", "clustered_blocks"):
        real = getattr(_blocks, name)

        def spy(*args, real=real, name=name):
            taken.append(name)
            return real(*args)

        monkeypatch.setattr(_blocks, name, spy)
    return taken


def test_clustered_pass_prunes_and_equals_brute_force(monkeypatch):
    # A few thousand items in well separated classes, as trained embeddings are: most
    # clusters of the other classes lie beyond a query's tau, so the clustered pass runs.
    taken = _pass_taken(monkeypatch)
    embeddings, labels = _low_rank_classes(3000, 10, 3.0, seed=5)
    metrics = _assert_equal_to_brute_force(embeddings, labels)
    assert 0.5 < metrics["map_at_r"] < 1.0
    assert set(taken) == {"clustered_blocks"}  # the top-k path falls back to it on a tie


def test_overlapping_classes_take_the_dense_pass_and_equal_brute_force(monkeypatch):
    # Classes overlapping so much that a query's tau reaches most clusters: the dense pass.
    taken = _pass_taken(monkeypatch)
    embeddings, labels = _low_rank_classes(3000, 10, 1.5, seed=10, scale=0.4)
    metrics = _assert_equal_to_brute_force(embeddings, labels)
    assert 0.05 < metrics["map_at_r"] < 0.5
    assert set(taken) == {"dense_blocks"}  # the top-k path falls back to it on a tie


def test_clustering_judged_on_no_query_keeps_the_dense_pass(monkeypatch):
    # Judged on one query, the first after sorting by class: here a class of one item (and
    # negative and huge label ids work as any other).
    monkeypatch.setattr(_blocks, "_SAMPLE", 1)
    taken = _pass_taken(monkeypatch)
    embeddings, labels = _low_rank_classes(1000, 5, 3.0, seed=11)
    labels = np.where(labels == 4, 10**12, labels)
    labels[1] = -7
    _assert_equal_to_brute_force(embeddings, labels)
    assert set(taken) == {"dense_blocks"}  # the top-k path falls back to it on a tie


@pytest.mark.parametrize(
    ("tile", "found", "margin"),
    [(3, 2, 1.1), (5, 4096, 0.5), (63, 8192, 1e9)],
    ids=["too-many-found", "guess-too-small", "guess-huge"],
)
def test_clustered_pass_fallbacks_equal_brute_force(monkeypatch, tile, found, margin):
    # Each way a tile query can go: more items than it may keep (done alone), a guessed tau
    # smaller than the one its items prove (done alone under it), a guess covering everything.
    monkeypatch.setattr(buffers, "TILE", tile)
    monkeypatch.setattr(buffers, "FOUND", found)
    monkeypatch.setattr(tiles, "GUESS_MARGIN", margin)
    monkeypatch.setattr(_blocks, "_VISITED_SHARE", 1.0)  # the clustered pass whatever
    embeddings, labels = _low_rank_classes(1200, 6, 1.0, seed=6)
    metrics = _assert_equal_to_brute_force(embeddings, labels)
    assert 0.05 < metrics["map_at_r"] < 0.99


@pytest.mark.parametrize(
    ("chunk", "parts"), [(1, 1), (4096, 64)], ids=["cluster-chunks", "many-parts"]
)
def test_clustered_pass_chunks_and_parts_equal_brute_force(monkeypatch, chunk, parts):
    # A tile's wanted clusters gathered one chunk per cluster (capacity: the largest cluster)
    # or all in one; each block run as one part per thread or as more parts than its tiles.
    monkeypatch.setattr(buffers, "CHUNK", chunk)
    monkeypatch.setattr(retrieval, "_PARTS_PER_THREAD", parts)
    monkeypatch.setattr(_blocks, "_VISITED_SHARE", 1.0)
    taken = _pass_taken(monkeypatch)
    embeddings, labels = _low_rank_classes(1200, 6, 1.0, seed=12)
    _assert_equal_to_brute_force(embeddings, labels)
    assert set(taken) == {"clustered_blocks"}  # the top-k path falls back to it on a tie


def test_clustered_pass_in_small_blocks_equals_brute_force(monkeypatch):
    # Blocks of a few queries, and each block's own-class products computed apart (the
    # class's products do not fit in one block) instead of mirrored from one product.
    monkeypatch.setattr(_blocks, "BLOCK_ELEMENTS", 5000)
    monkeypatch.setattr(_blocks, "_VISITED_SHARE", 1.0)
    embeddings, labels = _low_rank_classes(1000, 5, 1.0, seed=8)
    _assert_equal_to_brute_force(embeddings, labels)


def test_symmetric_products_equal_the_product():
    x = torch.from_numpy(np.random.default_rng(9).normal(size=(1000, 16)).astype(np.float32))
    products = _blocks.symmetric_products(x, torch.empty(1000 * 1000), band=96)
    # Computed once and mirrored wherever two rows lie in different bands.
    assert torch.equal(products.triu(96), products.tril(-96).T)
    torch.testing.assert_close(products, x @ x.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [1 << 25, 64], ids=["one-block", "blocks-of-points"])
def test_clusters_cover_each_class_within_their_radius(monkeypatch, block):
    monkeypatch.setattr(_blocks, "BLOCK_ELEMENTS", block)  # nearest centres in blocks
    rng = np.random.default_rng(7)
    z = torch.from_numpy(rng.normal(size=(500, 8)).astype(np.float32))
    stops = [120, 121, 400, 500]  # classes of 120, 1, 279 and 100 items
    order, centres, radius, starts = _principal.class_clusters(z, stops)
    assert sorted(order.tolist()) == list(range(500))
    for start, stop in zip([0, *stops[:-1]], stops, strict=True):  # classes stay in place
        assert sorted(order[start:stop].tolist()) == list(range(start, stop))
    assert starts[0] == 0 and starts[-1] == 500 and (starts.diff() > 0).all()
    assert set(stops) <= set(starts.tolist())  # no cluster spans two classes
    assert len(radius) == len(centres) == len(starts) - 1 >= 500 // 16 - 4
    for k in range(len(radius)):
        members = z[order[starts[k] : starts[k + 1]]].double()
        gaps = (members - centres[k]).norm(dim=1)
        assert (gaps <= radius[k]).all()
        assert gaps[0] == gaps.min()  # the member nearest the centre first
        assert gaps.max() >= radius[k] * (1 - 1e-6)  # and the radius is no larger than needed


def test_low_rank_error_bound_holds_for_every_pair():
    rng = np.random.default_rng(4)
    axes = np.linalg.qr(rng.normal(size=(128, 9)))[0].T
    x = (rng.normal(size=(600, 9)) @ axes + 3e-3 * rng.normal(size=(600, 128))).astype(np.float32)
    z, norms, error, slack = _principal.low_rank(torch.from_numpy(x))
    assert z.shape[1] <= 128 // 4
    approx = norms[:, None] + norms[None] - 2 * z @ z.T  # float32, as ranked
    exact = ((x.astype(np.float64)[:, None] - x[None]) ** 2).sum(-1)
    gap = np.abs(exact - approx.double().numpy())
    bound = error.numpy()[:, None] * error.numpy()[None] + slack
    assert (gap <= bound).all()
    assert bound.mean() < 0.01 * exact.mean()  # and it is tight enough to prune with


def test_full_rank_embeddings_equal_brute_force():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 700)
    embeddings = _on_grid(0.4 * (rng.normal(size=(700, 64)) + 3.0 * np.eye(64)[labels]))
    assert _principal.low_rank(torch.from_numpy(embeddings)) is None
    metrics = _assert_equal_to_brute_force(embeddings, labels)
    assert 0.05 < metrics["map_at_r"] < 0.99


def test_equal_distances_rank_the_other_class_first():
    # Points on an integer grid, many at equal distances, some duplicated across classes.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 200)
    embeddings = rng.integers(0, 4, size=(200, 2)).astype(np.float32)
    _assert_equal_to_brute_force(embeddings, labels)
    collapsed = retrieval_metrics(np.ones((50, 4)), np.arange(50) % 2)
    assert collapsed["precision_at_1"] == 0.0 and collapsed["r_precision"] < 0.05


def test_knn_accuracy_against_reference_set():
    reference = np.array([[0.0, 0.0], [10.0, 0.0]])
    queries = np.array([[1.0, 0.0], [9.0, 0.0], [6.0, 0.0]])
    assert knn_accuracy(queries, np.array([0, 1, 0]), reference, np.array([0, 1])) == 2 / 3
    # The reference set part by part (a gallery embedded chunk by chunk): the same answer.
    parts = iter([reference[:1], reference[1:]])
    assert knn_accuracy(queries, np.array([0, 1, 0]), parts, np.array([0, 1])) == 2 / 3
    with pytest.raises(ValueError, match="1 reference embeddings for 2 labels"):
        knn_accuracy(queries, np.array([0, 1, 0]), iter([reference[:1]]), np.array([0, 1]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="two or more"):
        retrieval_metrics(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan], [0.0]]), np.array([0, 0]))


def test_numpy_blas_held_to_torch_threads(monkeypatch):
    # Some products go through numpy's BLAS, which keeps its own pool: during the metrics it
    # gets torch's thread count, and its own back after.
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen = []
    metrics = retrieval._metrics

    def spy(*args):
        seen.append(blas_threads())
        return metrics(*args)

    monkeypatch.setattr(retrieval, "_metrics", spy)
    before, threads = blas_threads(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        retrieval_metrics(*_low_rank_classes(300, 3, 1.0, seed=13), method="engine")
    finally:
        torch.set_num_threads(threads)
    assert seen == [{1}]
    assert blas_threads() == before
