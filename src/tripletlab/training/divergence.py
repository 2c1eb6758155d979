"""Training that went wrong: NaN or Inf, or an embedding collapsed to one point."""

from __future__ import annotations

import numpy as np


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
