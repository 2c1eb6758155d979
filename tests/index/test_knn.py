"""nearest() and nearest_in_parts(), the one k-NN helper, against NumPy."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from tripletlab.index import nearest, nearest_in_parts


def test_nearest_equals_brute_force_with_and_without_exclusion():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    q = rng.normal(size=(20, 5)).astype(np.float32)
    d = np.sqrt(np.square(q[:, None].astype(np.float64) - x[None]).sum(-1))
    got_d, got = nearest(x, q, k=4)
    np.testing.assert_array_equal(got, np.argsort(d, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(got_d, np.sort(d, axis=1)[:, :4], rtol=1e-4)
    squared, _ = nearest(x, q, k=4, squared=True)
    np.testing.assert_allclose(squared, got_d**2, rtol=1e-4)
    # The items as queries, each leaving itself out.
    d_self = np.sqrt(np.square(x[:, None].astype(np.float64) - x[None]).sum(-1))
    np.fill_diagonal(d_self, np.inf)
    _, got = nearest(x, k=3, exclude=np.arange(300))
    np.testing.assert_array_equal(got, np.argsort(d_self, axis=1, kind="stable")[:, :3])


def test_exclusion_with_duplicates_drops_exactly_one_item():
    x = np.zeros((4, 2), dtype=np.float32)  # four equal items
    _, got = nearest(x, k=3, exclude=np.arange(4))
    for row in range(4):
        assert sorted(got[row].tolist()) == [i for i in range(4) if i != row]


def test_k_out_of_range():
    with pytest.raises(ValueError, match="between 1 and 2"):
        nearest(np.zeros((3, 2)), k=3, exclude=np.arange(3))
    with pytest.raises(ValueError, match="N >= 1"):
        nearest(np.zeros((0, 2)), k=1)


def test_nearest_in_parts_equals_nearest_on_the_whole():
    """Parts of uneven sizes (one empty, one smaller than k) give the positions and distances
    of one search over their concatenation, ties included, and the brute-force order."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(500, 4)).astype(np.float32)  # many equal distances
    q = rng.integers(0, 3, size=(30, 4)).astype(np.float32)
    whole_d, whole = nearest(x, q, k=7)
    cuts = [0, 0, 3, 130, 131, 400, 500]
    parts = (x[a:b] for a, b in pairwise(cuts))
    got_d, got = nearest_in_parts(parts, q, k=7)
    np.testing.assert_array_equal(got, whole)
    np.testing.assert_array_equal(got_d, whole_d)
    d = np.square(q[:, None].astype(np.float64) - x[None]).sum(-1)
    np.testing.assert_array_equal(got, np.argsort(d, axis=1, kind="stable")[:, :7])
    squared, _ = nearest_in_parts(iter([x[:250], x[250:]]), q, k=2, squared=True)
    np.testing.assert_allclose(squared, np.sort(d, axis=1)[:, :2], atol=1e-5)


def test_nearest_in_parts_refuses_too_few_items():
    with pytest.raises(ValueError, match=r"number of items \(5\), got 6"):
        nearest_in_parts([np.zeros((2, 3)), np.zeros((3, 3))], np.zeros((1, 3)), k=6)
    with pytest.raises(ValueError, match=r"number of items \(0\)"):
        nearest_in_parts([], np.zeros((1, 3)))
