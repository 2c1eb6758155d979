"""`augment.png`: what the model's own augmentation does to a training image."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.models import Embedder
from tripletlab.training import Callback
from tripletlab.viz.plots import augment_grid


def write_augment_grid(model: Embedder, images: np.ndarray, path: Path, seed: int = 0) -> Path:
    """The first of `images` (uint8 (N, H, W[, C])) and nine random augmentations made by the
    model's own `Augment` layer (in training mode), as a PNG at `path`.

    Training's random state is left untouched; the picture is the same for a seed.
    """
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        augment = copy.deepcopy(model.augment).train()
        with torch.no_grad():
            batch = model.rescale(torch.from_numpy(images[:1]).repeat(9, *[1] * (images.ndim - 1)))
            out = augment(batch).mul(255).round().clamp(0, 255).to(torch.uint8)
    finally:
        torch.set_rng_state(generator_state)
    out = out.permute(0, 2, 3, 1).numpy()
    return augment_grid(images[0], out[..., 0] if images.ndim == 3 else out, path)


class AugmentGridCallback(Callback):
    """Writes the run's `augment.png` when training starts, if the model augments at all."""

    def on_train_start(self, trainer: Any) -> None:
        if trainer.model.augment.enabled and len(trainer.train_set):
            write_augment_grid(trainer.model, trainer.train_set.images, trainer.run.augment_file)
