"""`spike_cnn`: the shared network of the triplet-loss MNIST project."""

from __future__ import annotations

from torch import nn

from tripletlab.models.initialization import keras_init
from tripletlab.models.registry import register_backbone


class SpikeCNNBackbone(nn.Sequential):
    """Conv 32 (3x3, ReLU) -> MaxPool 2 -> Conv 32 (3x3, ReLU) -> MaxPool 2 -> Dropout 0.25
    -> Flatten -> Dense 128 (ReLU). (N, C, H, W) -> (N, 128).

    Raises:
        ValueError: images smaller than 10 x 10 (nothing left after two convolutions and pools).
    """

    def __init__(self, channels: int = 1, image_size: tuple[int, int] = (28, 28)) -> None:
        side = [((length - 2) // 2 - 2) // 2 for length in image_size]  # two valid convs, pools
        if min(side) < 1:
            raise ValueError(f"spike_cnn needs images of at least 10 x 10, got {image_size}")
        super().__init__(
            nn.Conv2d(channels, 32, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),  # measured results of spike_cnn runs used nn.Dropout
            nn.Flatten(),
            nn.Linear(32 * side[0] * side[1], 128),
            nn.ReLU(),
        )
        keras_init(self)


@register_backbone("spike_cnn")
def _spike_cnn(channels: int, image_size: tuple[int, int]) -> nn.Module:
    return SpikeCNNBackbone(channels, image_size)
