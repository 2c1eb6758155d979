from __future__ import annotations

import numpy as np
import pytest
import torch

# Label layouts: several classes, pairs only, one class, all distinct (no positive pair).
LAYOUTS = {
    "mixed": [0, 0, 1, 1, 1, 2, 2, 3, 0, 2, 1, 3, 4, 4, 0, 1],
    "pairs": [0, 0, 1, 1, 2, 2, 3, 3],
    "single-class": [5] * 7,
    "no-positive": [0, 1, 2, 3, 4, 5],
    "singletons-mixed": [0, 1, 1, 2, 3, 3, 3, 4],
}


def make_embeddings(num: int, dim: int = 5, seed: int = 0, normalize: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, dim)).astype(np.float32)
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request) -> tuple[str, np.ndarray]:
    return request.param, np.array(LAYOUTS[request.param])


def as_tensor(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype, requires_grad=True)
