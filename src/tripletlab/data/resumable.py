"""Samplers that can go on with an epoch from a given batch, after a resumed run."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


class ResumableSampler:
    """Mixin of the batch samplers: `resume_at(step, snapshot)` makes the next iteration start
    at batch `step` of the epoch; `snapshot()` is what that needs besides the seed and the
    epoch (None for samplers whose batches depend on nothing else)."""

    _skip = 0

    def snapshot(self) -> dict[str, Any] | None:
        """What `resume_at` needs to go on with the epoch in progress (None: nothing)."""
        return None

    def resume_at(self, step: int, snapshot: dict[str, Any] | None = None) -> None:
        """Start the next iteration at batch `step` of the epoch set with `set_epoch`."""
        del snapshot  # these batches depend only on the seed and the epoch
        self._skip = step

    def _from_skip(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        skip, self._skip = self._skip, 0
        return itertools.islice(batches, skip, None)


def batch_bounds(count: int, batch_size: int) -> list[int]:
    """Where each batch of `count` items starts, then `count`: batches of `batch_size`, the
    last one the remainder (as `tf.data.Dataset.batch`), except that a lone last item joins
    the batch before it: one image (or triplet) has no pair to learn from, and PyTorch's
    BatchNorm refuses to train on a batch of one (a ResNet's 1 x 1 last map at 28 px)."""
    bounds = [*range(0, count, batch_size), count]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return bounds
