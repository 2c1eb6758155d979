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


# Exact search of this many queries or more goes through BLAS, fewer through FAISS's scan (one
# query a thread). 60,000 x 256, 2 cores, 2026-12-02, two runs: 2 queries 3.3 / 4.0 ms scanned
# against 6.0 / 8.5 ms through BLAS, 4 about equal, 8 10.7 / 13.5 against 8.2 / 10.9, 16
# 23.5 / 27.7 against 9.3 / 11.8 (FAISS 1.15's default is 128,000).
_BLAS_THRESHOLD = 8

# FAISS's wheels bring their own OpenBLAS (faiss-cpu 1.15.1: 0.3.15), which predates newer Xeons
# and falls back to its generic "Prescott" kernels on them: on this project's Sapphire Rapids
# machine (2026-12-02) FAISS's exact search of 10,000 queries against 60,000 x 256 took 8.7 s
# instead of 2.2 s with the AVX-512 ("SkylakeX") kernels. OpenBLAS reads OPENBLAS_CORETYPE once,
# as it loads; on a CPU with the AVX-512 parts those kernels use, and unless the user chose
# a core type, it is named for the import and removed again (no effect where FAISS was
# imported before this module's first call).
AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"})


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags.

    Returns:
        The flags of /proc/cpuinfo's first CPU (`avx512f`, ...); empty where there is none.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@cache
def faiss() -> ModuleType:
    """The `faiss` module, its OpenMP threads set to the machine's cores (unless
    `OMP_NUM_THREADS` says otherwise, which FAISS then follows), its OpenBLAS on AVX-512
    kernels where the CPU has them (unless `OPENBLAS_CORETYPE` says otherwise).

    Raises:
        ImportError: faiss-cpu is not installed, with how to install it.
    """
    name_core = "OPENBLAS_CORETYPE" not in os.environ and cpu_flags() >= AVX512_FLAGS
    if name_core:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    try:
        import faiss as module
    except ImportError as error:
        raise ImportError(
            "similarity search needs FAISS: pip install faiss-cpu (a tripletlab dependency; "
            f"was the install interrupted?) ({error})"
        ) from None
    finally:
        if name_core:
            os.environ.pop("OPENBLAS_CORETYPE", None)
    if not os.environ.get("OMP_NUM_THREADS"):
        module.omp_set_num_threads(machine_cores())
    module.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
    return module


def faiss_version() -> str:
    """FAISS's version string."""
    return str(faiss().__version__)
