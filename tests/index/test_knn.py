"""nearest(), the one k-NN helper, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from tripletlab.index import nearest


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
