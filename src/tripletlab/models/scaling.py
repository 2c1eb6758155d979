"""Input scaling inside the model: the pixel range a backbone was trained with.

`Rescale` (in `embedder`) maps 0..255 to [0, 1]; `InputScaling` then gives "unit" ([0, 1],
unchanged), "symmetric" ([-1, 1], the Keras guide's `Rescaling(1/127.5, offset=-1)`) or
"mean-std" (per-channel `(x - mean) / std`, ImageNet's statistics by default). Being part of
the model, it is saved with the run and exported inside the ONNX graph: callers always pass raw
uint8 pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig

# Backbones trained on ImageNet-normalized inputs: "auto" scaling gives them mean-std.
IMAGENET_BACKBONES = ("resnet18", "resnet50")
IMAGENET_PREFIXES = ("torchvision:", "timm:")


def resolve_scaling(config: ModelConfig) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """The scaling mode `config` means ("auto": mean-std for the ImageNet backbones or when a
    mean or std is given, else unit), with its per-channel mean and std.

    Raises:
        ValueError: mean-std without mean / std for images that are not 3-channel (ImageNet's
            statistics are for RGB).
    """
    mode = config.input_scaling
    if mode == "auto":
        imagenet = config.backbone in IMAGENET_BACKBONES or config.backbone.startswith(
            IMAGENET_PREFIXES
        )
        given = config.input_mean is not None or config.input_std is not None
        mode = "mean-std" if imagenet or given else "unit"
    channels = config.channels
    if mode == "unit":
        return mode, (0.0,) * channels, (1.0,) * channels
    if mode == "symmetric":
        return mode, (0.5,) * channels, (0.5,) * channels
    if config.input_mean is not None and config.input_std is not None:
        return mode, tuple(config.input_mean), tuple(config.input_std)
    if channels == 3:
        return mode, config.input_mean or IMAGENET_MEAN, config.input_std or IMAGENET_STD
    if channels == 1 and config.input_mean is None and config.input_std is None:
        # A grey image in a 3-channel ImageNet network is the same value in R, G and B; its
        # summed first layer (see `resnet.ResNet.upgrade_state_dict`) sees the mean statistics.
        return mode, (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    raise ValueError(
        f"model.input_scaling mean-std for {channels}-channel images needs model.input_mean and "
        "model.input_std (one value per channel)"
    )


class InputScaling(nn.Module):
    """Float images (N, C, H, W) in [0, 1] -> `(x - mean) / std` per channel; the identity for
    "unit" scaling (no operation at all, so unit-scaled models compute exactly as before)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.mode, mean, std = resolve_scaling(config)
        # Not in the state dict: the config says what they are (checkpoints stay loadable).
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if self.mode == "unit":
            return images
        return (images - self.mean) / self.std

    def extra_repr(self) -> str:
        return self.mode
