"""FAISS and PyTorch in one process (both bring OpenMP; some builds crash together), and FAISS
imported only where an index is used."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tripletlab.index._faiss import AVX512_FLAGS, cpu_flags

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


_CORE = """
import os
from tripletlab.index._faiss import faiss
faiss().IndexFlatIP(4)
print("left", os.environ.get("OPENBLAS_CORETYPE"))
"""


def _import_faiss(env: dict[str, str]) -> tuple[str, list[str]]:
    """A child importing FAISS through tripletlab with OpenBLAS's choices printed: its
    stdout, and the core types its OpenBLAS libraries chose, in the order they loaded."""
    child = subprocess.run([sys.executable, "-c", _CORE], capture_output=True, text=True,
                           timeout=300, env={**env, "OPENBLAS_VERBOSE": "2"})  # fmt: skip
    assert child.returncode == 0, child.stderr
    cores = [line.split(":", 1)[1].strip() for line in (child.stdout + child.stderr).splitlines()
             if line.startswith("Core:")]  # fmt: skip
    return child.stdout, cores


# Some machines set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) for every process, because older
# OpenBLAS builds compute wrong results or crash on their processors: no test changes either,
# not even in a child. Each machine runs the one of the two tests below that its environment
# allows: FAISS's own choice where no core type is set, the user's choice kept where one is.
_CHOSEN = os.environ.get("OPENBLAS_CORETYPE")


@pytest.mark.skipif(not cpu_flags() >= AVX512_FLAGS,
                    reason="the AVX-512 kernels need a CPU with AVX-512")  # fmt: skip
@pytest.mark.skipif(_CHOSEN is not None,
                    reason="this environment chose a core type; no test changes it")  # fmt: skip
def test_faiss_openblas_uses_avx512_kernels_and_leaves_the_environment_alone():
    stdout, cores = _import_faiss(dict(os.environ))
    assert cores and cores[-1] == "SkylakeX", cores  # FAISS's OpenBLAS loads last
    assert "left None" in stdout


@pytest.mark.skipif(platform.machine() != "x86_64" or not sys.platform.startswith("linux"),
                    reason="OpenBLAS's x86 core types, named on Linux")  # fmt: skip
@pytest.mark.skipif(_CHOSEN is None,
                    reason="this environment chose no core type; tests do not set one")  # fmt: skip
def test_a_core_type_the_user_chose_is_kept():
    stdout, cores = _import_faiss(dict(os.environ))
    assert f"left {_CHOSEN}" in stdout
    assert cores and cores[-1].lower() == _CHOSEN.lower(), cores
