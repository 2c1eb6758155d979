from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab.losses import DISTANCES, pairwise_distance
from tripletlab.losses.distances import distance_grad_weights, distance_matrix, distance_vjp

from .conftest import make_embeddings
from .reference import distances


@pytest.mark.parametrize("distance", DISTANCES)
def test_pairwise_distance_matches_reference(distance):
    x = make_embeddings(12, dim=7, seed=1)
    got = pairwise_distance(torch.tensor(x), distance).numpy()
    np.testing.assert_allclose(got, distances(x, distance), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_in_place_matrix_equals_differentiable_version(distance):
    x = torch.tensor(make_embeddings(20, dim=4, seed=2))
    torch.testing.assert_close(distance_matrix(x, distance), pairwise_distance(x, distance))


def test_l2_diagonal_and_duplicates_are_exactly_zero():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]])
    dist = pairwise_distance(x, "L2")
    assert torch.all(dist.diagonal() == 0)
    assert dist[0, 1] == 0 and dist[1, 0] == 0


@pytest.mark.parametrize("distance", DISTANCES)
def test_vjp_matches_autograd(distance):
    x = torch.tensor(make_embeddings(10, dim=3, seed=3), dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (pairwise_distance(x, distance) * upstream).sum().backward()
    with torch.no_grad():
        dist = distance_matrix(x.detach(), distance)
        weights = distance_grad_weights(dist, upstream.clone(), distance)
        got = distance_vjp(x.detach(), weights, distance)
    torch.testing.assert_close(got, x.grad)


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradient_finite_with_duplicates(distance):
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    pairwise_distance(x, distance).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unknown_distance_lists_valid_values():
    with pytest.raises(ValueError, match="L2, squared-L2, angular"):
        pairwise_distance(torch.zeros(2, 2), "cosine")
