"""Random draws of a part of a batch equal to those of the whole batch (distributed training).

A rank of a distributed run computes rows `start` .. `start + n - 1` of a global batch of
`total` rows. Inside `batch_part(start, total)`, the layers that draw random numbers per row
(`Augment`, and the dropout of `tripletlab.training.distributed.GlobalDropout`) draw them for
all `total` rows and keep their own, and `FastDropout` masks its rows as they are masked in
the whole batch. Every rank draws the same numbers from the same
generator state, so the ranks' rows, put together, are what one process on the global batch
computes, and the generators stay in step across ranks. Outside the block a tensor is a
whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

_PART: ContextVar[tuple[int, int] | None] = ContextVar("batch_part", default=None)


@contextmanager
def batch_part(start: int, total: int) -> Iterator[None]:
    """Within this block the batches layers see are rows from `start` of a batch of `total`."""
    if not 0 <= start <= total:
        raise ValueError(f"rows from {start} of a batch of {total}: out of range")
    token = _PART.set((start, total))
    try:
        yield
    finally:
        _PART.reset(token)


def current_part() -> tuple[int, int] | None:
    """(start, total) of the `batch_part` block this runs in, or None outside one."""
    return _PART.get()


def rows_before() -> int:
    """The rows of the whole batch before this part (0 outside `batch_part`)."""
    part = _PART.get()
    return part[0] if part is not None else 0


def rand_rows(rows: int, *shape: int, device: torch.device | None = None) -> Tensor:
    """`torch.rand(rows, *shape)` for this part's rows: drawn for the whole batch inside
    `batch_part` (rows `start` .. `start + rows - 1` of it kept)."""
    part = _PART.get()
    if part is None:
        return torch.rand(rows, *shape, device=device)
    start, total = part
    if start + rows > total:
        raise ValueError(f"rows {start}..{start + rows - 1} of a batch of {total}")
    return torch.rand(total, *shape, device=device)[start : start + rows]


def draw_layout(x: Tensor) -> torch.memory_format:
    """The memory layout in which per-element draws (dropout masks) of `x` are made.

    Args:
        x: any tensor; (N, C, H, W) ones may be stored channels-last.
    Returns:
        `torch.channels_last` for a 4-d tensor stored so (and not also plain contiguous, as
        (N, C, 1, 1) is): the draws then follow its memory order. Otherwise
        `torch.contiguous_format` (for a tensor stored in neither layout, the order of a
        plain contiguous copy).
    """
    channels_last = x.ndim == 4 and not x.is_contiguous()
    if channels_last and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
