"""EmbeddingIndex against NumPy brute force, adding, removing, and its FAISS kinds."""

from __future__ import annotations

import numpy as np
import pytest

from tripletlab.index import (
    EmbeddingIndex,
    IndexSettings,
    default_nlist,
    default_pq_m,
    search_other_classes,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(items: np.ndarray, queries: np.ndarray, distance: str, k: int):
    """float64 distances in the loss's definition; ranks by distance, equal ones by position."""
    a, b = items.astype(np.float64), queries.astype(np.float64)
    if distance == "angular":
        a, b = _unit(a).astype(np.float64), _unit(b).astype(np.float64)
        d = np.maximum(1 - b @ a.T, 0)
    else:
        d = np.square(b[:, None, :] - a[None, :, :]).sum(-1)
        d = d if distance == "squared-L2" else np.sqrt(d)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("distance", ["L2", "squared-L2", "angular"])
def test_exact_search_equals_brute_force(distance, normalized):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(500, 16)).astype(np.float32) * 3
    queries = rng.normal(size=(40, 16)).astype(np.float32) * 3
    if normalized:
        items, queries = _unit(items), _unit(queries)
    index = EmbeddingIndex(16, distance, normalized)
    ids = index.add(items, np.arange(500) % 7)
    assert ids.tolist() == list(range(500))
    got_d, got_ids = index.search(queries, k=10, batch_size=7)  # several FAISS calls
    want_d, want_ids = _brute(items, queries, distance, 10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=2e-3 if normalized else 1e-4)
    np.testing.assert_array_equal(index.labels_of(got_ids), got_ids % 7)


@pytest.mark.parametrize("normalized", [True, False])
def test_equal_distances_come_back_in_the_order_added(normalized):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    base = _unit(base) if normalized else base
    items = np.repeat(base, 4, axis=0)  # each vector four times, items 4i..4i+3
    index = EmbeddingIndex(8, "L2", normalized)
    index.add(items, np.zeros(20, dtype=np.int64), ids=np.arange(100, 120))
    _, ids = index.search(base, k=8)
    for row in range(5):
        assert ids[row, :4].tolist() == [100 + 4 * row + j for j in range(4)]


def test_k_beyond_the_items_and_an_empty_index():
    index = EmbeddingIndex(4, "L2", normalized=False)
    d, ids = index.search(np.ones((2, 4)), k=3)
    assert (ids == -1).all() and np.isinf(d).all()
    index.add(np.eye(4)[:2], np.array([0, 1]))
    d, ids = index.search(np.eye(4)[:1], k=3)
    assert ids[0].tolist() == [0, 1, -1] and np.isinf(d[0, 2]) and d[0, 0] == 0


def test_bad_vectors_and_ids_are_refused_with_a_clear_error():
    index = EmbeddingIndex(4, "L2", normalized=True)
    with pytest.raises(ValueError, match="not L2-normalized"):
        index.add(np.ones((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"expected embeddings \(N, 4\)"):
        index.add(np.ones((2, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 4), np.nan), k=1)
    with pytest.raises(ValueError, match="integer labels"):
        index.add(np.eye(4), np.zeros(4))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.eye(4), k=0)
    index.add(np.eye(4), np.zeros(4, dtype=int), ids=np.array([5, 6, 7, 8]))
    with pytest.raises(ValueError, match="already stored: \\[5\\]"):
        index.add(np.eye(4)[:1], np.zeros(1, dtype=int), ids=np.array([5]))
    with pytest.raises(ValueError, match="distinct non-negative"):
        index.add(np.eye(4)[:2], np.zeros(2, dtype=int), ids=np.array([9, 9]))
    assert index.add(np.eye(4)[:1], np.zeros(1, dtype=int)).tolist() == [9]  # after the largest
    with pytest.raises(ValueError, match="unknown index kind"):
        IndexSettings("annoy")
    with pytest.raises(ValueError, match="unknown distance"):
        EmbeddingIndex(4, "cosine")


@pytest.mark.parametrize("kind", ["exact", "ivf-pq"])
def test_removed_items_are_never_found_again(kind):
    rng = np.random.default_rng(2)
    items = _unit(rng.normal(size=(3000, 16)))
    settings = IndexSettings(kind, nlist=4, nbits=4, nprobe=4)
    index = EmbeddingIndex(16, "L2", True, settings)
    index.add(items, np.arange(3000) % 3, [f"file{i}.png" for i in range(3000)])
    _, before = index.search(items[:5], k=1)
    gone = before[:, 0]
    assert index.remove(gone) == 5 and len(index) == 2995
    _, after = index.search(items[:5], k=20)
    assert not np.isin(after, gone).any()
    kept = np.setdiff1d(np.arange(3000), gone)[:3]
    assert index.sources_of(kept) == [f"file{i}.png" for i in kept]
    with pytest.raises(ValueError, match=f"no item with id {gone[0]}"):
        index.remove(gone[:1])


def test_hnsw_cannot_remove_and_says_what_to_do():
    index = EmbeddingIndex(4, "L2", False, IndexSettings("hnsw"))
    index.add(np.eye(4), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"HNSW index cannot remove.*--kind exact or ivf-pq"):
        index.remove(np.array([0]))


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return _unit(centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim)))


@pytest.mark.parametrize("kind", ["hnsw", "ivf-pq"])
def test_approximate_kinds_find_most_true_neighbours(kind):
    items, queries = _clustered(6000, 32, 3), _clustered(100, 32, 4)
    exact = EmbeddingIndex(32, "L2", True)
    exact.add(items, np.zeros(len(items), dtype=int))
    settings = IndexSettings(kind, ef_search=256, nlist=32, pq_m=16, nbits=6, nprobe=8)
    approximate = EmbeddingIndex(32, "L2", True, settings)
    approximate.add(items, np.zeros(len(items), dtype=int))
    _, want = exact.search(queries, k=10)
    got_d, got = approximate.search(queries, k=10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)])
    assert recall > (0.95 if kind == "hnsw" else 0.5), recall
    assert np.all(np.diff(got_d, axis=1) >= -1e-6)  # nearest first


def test_ivf_pq_needs_a_large_enough_training_sample():
    index = EmbeddingIndex(16, "L2", True, IndexSettings("ivf-pq"))
    with pytest.raises(ValueError, match=r"at least 9,984 vectors \(its 8-bit codes") as error:
        index.add(_clustered(500, 16, 0), np.zeros(500, dtype=int))
    assert "nlist" not in str(error.value)  # fewer lists would not help
    many_lists = EmbeddingIndex(16, "L2", True, IndexSettings("ivf-pq", nlist=1000))
    with pytest.raises(ValueError, match=r"at least 39,000 vectors \(its 1000 lists.*fewer lists"):
        many_lists.add(_clustered(500, 16, 0), np.zeros(500, dtype=int))
    assert default_nlist(1_000_000) == 4096 and default_nlist(10) == 16 and default_nlist(0) == 4
    assert default_pq_m(256) == 64 and default_pq_m(64) == 16 and default_pq_m(7) == 1


def test_search_among_other_classes_equals_brute_force():
    rng = np.random.default_rng(5)
    items, labels = _unit(rng.normal(size=(400, 8))), rng.integers(0, 4, 400)
    queries, query_labels = _unit(rng.normal(size=(30, 8))), rng.integers(-1, 4, 30)
    index = EmbeddingIndex(8, "squared-L2", True)
    index.add(items, labels)
    got_d, got = search_other_classes(index, queries, query_labels, k=3)
    for row, label in enumerate(query_labels):
        allowed = np.flatnonzero(labels != label)
        want_d, want = _brute(items[allowed], queries[row : row + 1], "squared-L2", 3)
        assert got[row].tolist() == allowed[want[0]].tolist()
        np.testing.assert_allclose(got_d[row], want_d[0], atol=1e-5)


def test_an_empty_index_matches_nothing_and_refuses_negative_labels():
    index = EmbeddingIndex(2, "L2", normalized=False)
    index.add(np.eye(2), np.array([0, 1]))
    index.remove(np.array([0, 1]))
    matches = index.match(np.eye(2), threshold=1.0)
    assert matches.labels.tolist() == [-1, -1] and np.isinf(matches.distances).all()
    with pytest.raises(ValueError, match="labels must be >= 0"):
        index.add(np.eye(2), np.array([0, -1]))
    with pytest.raises(ValueError, match="k must be a whole number from 1 to 100,000"):
        index.search(np.eye(2), k=10**9)


def test_match_says_unknown_beyond_the_threshold():
    index = EmbeddingIndex(2, "L2", normalized=False, class_names=["cat", "dog"])
    index.add(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([0, 1]))
    queries = np.array([[0.5, 0.0], [9.0, 0.0], [5.0, 4.0]])
    matches = index.match(queries, threshold=1.5)
    assert matches.labels.tolist() == [0, 1, -1]
    np.testing.assert_allclose(matches.distances, [0.5, 1.0, np.sqrt(41)], rtol=1e-6)
    assert [index.label_name(y) for y in matches.labels] == ["cat", "dog", "unknown"]
    with pytest.raises(ValueError, match="not calibrated"):
        index.match(queries)
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(ValueError, match="a distance threshold is a finite number >= 0"):
            index.match(queries, threshold=bad)


def test_a_new_class_name_never_takes_a_stored_label():
    """An index built without class names (or with fewer than its labels): labels 0 and 1
    are named "0" and "1" first, so a new class "cat" gets label 2."""
    index = EmbeddingIndex(4, "L2", normalized=False)
    index.add(np.eye(4, dtype=np.float32)[:2], np.array([0, 1]))
    assert index.names_with(["cat", "1", "cat"]) == ["0", "1", "cat"]
    index.class_names = ["zero"]
    assert index.names_with(["cat"]) == ["zero", "1", "cat"]
    assert EmbeddingIndex(4, "L2").names_with(["cat"]) == ["cat"]
