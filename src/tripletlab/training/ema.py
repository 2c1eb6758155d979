"""An exponential moving average of a model's weights, validated and saved instead of them."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The average of `model`'s weights and buffers (BatchNorm statistics too).

    The decay warms up as min(decay, (1 + t) / (10 + t)) over the steps t taken so far, so
    the random initial weights do not linger in the average of a short run.

    Args:
        model: the model whose weights are averaged; the average starts as a copy of it.
        decay: the largest decay, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.steps = 0

    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights."""
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        pairs = zip(
            [*self.model.parameters(), *self.model.buffers()],
            [*model.parameters(), *model.buffers()],
            strict=True,
        )
        with torch.no_grad():
            for average, value in pairs:
                if average.is_floating_point():
                    average.lerp_(value, 1.0 - decay)
                else:  # e.g. BatchNorm's num_batches_tracked
                    average.copy_(value)
