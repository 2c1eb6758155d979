"""Keeping memory-mapped data out of a process's resident memory."""

from __future__ import annotations

import mmap
from contextlib import suppress
from typing import Any


def release_pages(array: Any) -> None:
    """Drop the pages of a memory-mapped array (`np.memmap`, or a view of one) from this
    process's resident set: they stay in the OS page cache (and a shared mapping's writes in
    its file), and the next touch maps them again without a copy; a copy-on-write mapping
    (`np.memmap` mode "c") loses what was written into it. Anything else: nothing.

    Reading a mapped array counts every page read in the process's resident memory (RSS) until
    the OS needs it back; releasing them every few hundred MB keeps RSS at what is in use.
    """
    mapping = getattr(array, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mapping, "madvise"):
        with suppress(OSError, ValueError):  # a closed mapping, or an OS without it
            mapping.madvise(mmap.MADV_DONTNEED)
