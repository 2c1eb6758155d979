"""Training that went wrong: NaN or Inf, or an embedding collapsed to one point."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became NaN or Inf, or the embedding collapsed to one point; the
    checkpoints written before are intact and no broken one is written."""


# Images of the training set embedded after each epoch to see a collapse when there is no
# validation set.
COLLAPSE_PROBE = 256


def is_collapsed(embeddings: np.ndarray) -> bool:
    """Whether every embedding (N, D), N >= 2, is the same point (to float32 rounding): what a
    diverged network gives when its ReLUs die (the loss then sits at the margin)."""
    if len(embeddings) < 2:
        return False
    spread = np.ptp(embeddings, axis=0).max()
    return bool(spread <= 1e-6 * max(1.0, float(np.abs(embeddings).max())))


def check_finite(model: nn.Module, epoch: int, kept: str) -> None:
    """Refuse weights or buffers that became NaN or Inf, before they are saved.

    Raises:
        TrainingDivergedError: naming the tensor and saying what was kept (`kept`).
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDivergedError(
                f"the weights became NaN or Inf in epoch {epoch + 1} ({name}); training "
                f"stopped, {kept} (try a lower --lr)"
            )


def check_collapse(embeddings: np.ndarray, epoch: int, what: str, kept: str) -> None:
    """Refuse an embedding that collapsed: all probed images (`what`) at one point.

    Raises:
        TrainingDivergedError: saying what was kept (`kept`).
    """
    if is_collapsed(embeddings):
        raise TrainingDivergedError(
            f"the embedding collapsed in epoch {epoch + 1}: all {len(embeddings)} {what} "
            f"images map to the same point; training stopped, {kept} (try a lower --lr)"
        )
