"""Keep glibc's malloc from returning and re-faulting the memory of every training step.

glibc serves allocations above its mmap threshold (128 KiB at start) with fresh `mmap` pages
and unmaps them on free, so each small-batch training step page-faults and zeroes its
activations anew. glibc raises that threshold on its own only after some large block is freed;
until then (in practice: until the first validation pass) the tutorial network trained at about
half speed (measured: ~1,000 vs ~1,900 images / s at batch 32 on 2 cores).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB come from the heap (glibc's largest allowed value on 64-bit); up to
# 128 MiB of free heap top is kept rather than returned to the system after each step.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024


@functools.cache
def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds once per process (Linux with glibc only).

    Opt out with the environment variable `TRIPLETLAB_TUNE_MALLOC=0`, or by setting glibc's own
    `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`, which are then left alone.

    Returns:
        True when the thresholds were set here.
    """
    if os.environ.get("TRIPLETLAB_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already linked into Python
    except (OSError, AttributeError):  # C libraries without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Trim first: setting either value switches glibc's automatic adjustment off for both.
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
