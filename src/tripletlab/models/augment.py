"""Augmentation inside the model, active in training mode only (Keras preprocessing layers)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripletlab.models.batch_part import rand_rows


class Augment(nn.Module):
    """Random horizontal flip, rotation and translation of float images (N, C, H, W).

    Args:
        flip: flip left-right with probability 1/2 (off for digits: a mirrored 3 is no 3).
        rotation: largest rotation in degrees, drawn uniformly in [-rotation, rotation].
        translate: largest shift as a fraction of the size, drawn uniformly per axis.
    In eval mode, or with nothing enabled, the input passes through unchanged. Draws are per
    row, of the whole batch inside `tripletlab.models.batch_part.batch_part`.
    """

    def __init__(self, flip: bool = False, rotation: float = 0.0, translate: float = 0.0) -> None:
        super().__init__()
        if rotation < 0 or not 0 <= translate < 1:
            raise ValueError("rotation must be >= 0 degrees and translate in [0, 1)")
        self.flip, self.rotation, self.translate = flip, rotation, translate

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotation > 0 or self.translate > 0

    def forward(self, images: Tensor) -> Tensor:
        if not self.training or not self.enabled:
            return images
        n = images.shape[0]
        if self.flip:
            flipped = rand_rows(n, device=images.device) < 0.5
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        if self.rotation > 0 or self.translate > 0:
            angle = (rand_rows(n, device=images.device) * 2 - 1) * math.radians(self.rotation)
            shift = (rand_rows(n, 2, device=images.device) * 2 - 1) * 2 * self.translate
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack(
                [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
                dim=1,
            )  # (N, 2, 3) affine maps in normalized coordinates
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
        return images

    def extra_repr(self) -> str:
        return f"flip={self.flip}, rotation={self.rotation}, translate={self.translate}"
