"""FAISS and PyTorch in one process (both bring OpenMP; some builds crash together), and FAISS
imported only where an index is used."""

from __future__ import annotations

import subprocess
import sys

_BOTH = """
import numpy as np, torch
from tripletlab.index import EmbeddingIndex, nearest
x = torch.nn.functional.normalize(torch.randn(2000, 32), dim=1)
loss = torch.nn.Linear(32, 8)(x).square().mean()
loss.backward()                     # torch's threads busy first
index = EmbeddingIndex(32)
index.add(x.numpy(), np.zeros(2000, dtype=np.int64))
_, ids = index.search(x[:100].numpy(), k=1)
assert (ids[:, 0] == np.arange(100)).all()
y = torch.randn(4000, 64) @ torch.randn(64, 64)  # torch again after FAISS
assert nearest(y.numpy(), k=2)[1].shape == (4000, 2)
print("ok", torch.get_num_threads())
"""


def test_faiss_and_torch_run_in_one_process():
    child = subprocess.run([sys.executable, "-c", _BOTH], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("ok")


def test_faiss_is_imported_only_when_an_index_is_used():
    code = ("import sys, tripletlab, tripletlab.index, tripletlab.search, tripletlab.evaluation, "
            "tripletlab.cli.main\nprint('faiss' in sys.modules)")  # fmt: skip
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"
