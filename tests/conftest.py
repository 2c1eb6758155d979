from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    # Two cores on CI: keep intra-op threads at the core count (PyTorch's default may be higher).
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
