"""Each rank's share of a sampler's global batches, for `torch.distributed` training."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def part_sizes(count: int, world: int) -> list[int]:
    """The sizes of the `world` contiguous parts `np.array_split` cuts `count` items into."""
    base, extra = divmod(count, world)
    return [base + (rank < extra) for rank in range(world)]


class RankShard:
    """Rank `rank`'s part of every global batch of `sampler`: the batch cut into `world`
    contiguous parts whose sizes differ by at most one, part `rank`.

    Every rank draws the same global batches (the same seed and epoch), so the parts,
    concatenated in rank order (as `all_gather` returns them), are exactly the batch one
    process would train on, PK batches included (the P classes of a step are global, not per
    rank), and an epoch covers the data once across the ranks. While iterating, `batch` is
    the global batch of the part last given and `start` the rows of it before that part.
    Everything else (`set_epoch`, `len`, `snapshot`, `resume_at`, `dropped`, ...) is the
    wrapped sampler's.
    """

    def __init__(self, sampler: Any, rank: int, world: int) -> None:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}) of a world of size >= 1, got {rank}")
        self.sampler = sampler
        self.rank = rank
        self.world = world
        self.batch = np.zeros(0, dtype=np.int64)
        self.start = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.sampler:
            sizes = part_sizes(len(batch), self.world)
            self.batch, self.start = batch, sum(sizes[: self.rank])
            yield batch[self.start : self.start + sizes[self.rank]]

    def __getattr__(self, name: str) -> Any:
        if name == "sampler":  # not set yet (while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)
