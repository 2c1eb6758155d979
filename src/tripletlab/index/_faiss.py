"""The one place that imports FAISS: lazily, on first use, with its threads set once.

FAISS and PyTorch each bring an OpenMP runtime; builds that load them in one process have been
reported to crash. Importing FAISS only here, only when an index is needed, keeps every other
command free of it, and `tests/index/test_faiss_with_torch.py` runs both in one process.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType


def machine_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_BLAS_THRESHOLD = 20


@cache
def faiss() -> ModuleType:
    """The `faiss` module, its OpenMP threads set to the machine's cores (unless
    `OMP_NUM_THREADS` says otherwise, which FAISS then follows).

    Raises:
        ImportError: faiss-cpu is not installed, with how to install it.
    """
    try:
        import faiss as module
    except ImportError as error:
        raise ImportError(
            "similarity search needs FAISS: pip install faiss-cpu (a tripletlab dependency; "
            f"was the install interrupted?) ({error})"
        ) from None
    if not os.environ.get("OMP_NUM_THREADS"):
        module.omp_set_num_threads(machine_cores())
    # Exact search of a few queries through BLAS, FAISS's default for years (1.15's is 128,000):
    # 32 queries against 60,000 x 256 took 6.8 ms instead of 34.8 ms; 64: 11.3 against 68.8.
    module.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
    return module


def faiss_version() -> str:
    """FAISS's version string."""
    return str(faiss().__version__)
