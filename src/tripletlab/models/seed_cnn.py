"""`seed_cnn`: the network of TF Addons' TripletSemiHardLoss tutorial, up to its Flatten."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor, nn

from tripletlab.models.fast_dropout import FastDropout
from tripletlab.models.initialization import keras_init
from tripletlab.models.registry import register_backbone

# Checkpoints written before the layers had names index them by position.
_LEGACY_PREFIXES = {"1.": "conv1.", "6.": "conv2."}


class SeedCNNBackbone(nn.Sequential):
    """Conv 64 (2x2, same, ReLU) -> MaxPool 2 -> Dropout 0.3 -> Conv 32 (2x2, same, ReLU)
    -> MaxPool 2 -> Dropout 0.3 -> Flatten. (N, C, 28, 28) -> (N, 32 * 7 * 7).

    Args:
        channels: image channels.
        fused: run the first layer (pad, conv, pool) as one compiled pass, and each ReLU with
            its dropout as one pass (`tripletlab.models._conv_pool`, `FastDropout.after_relu`),
            where that applies: one-channel float32 CPU images that need no gradient, outside
            tracing, compiling and ONNX export. Same values and gradients as the layers one by
            one (tested); training at batch 32 on 2 CPU cores 1.4x to 1.6x faster
            (docs/performance.md). The fused layers' own `forward` does not run, so forward
            hooks on pad1, conv1, pool1, relu1, drop1, relu2 and drop2 do not fire: set
            `fused = False`, or run inside `tripletlab.models.layer_by_layer` (as the model
            summary does), to run and hook every layer.
    """

    def __init__(self, channels: int = 1, fused: bool = True) -> None:
        # TF's "same" padding for a 2x2 kernel: one zero row and column after the image.
        # An explicit pad avoids the slower padded copy PyTorch makes for padding="same".
        # Pooling before the ReLU computes exactly the same values and gradients (the ReLU is
        # monotone, so it commutes with max) on a tensor four times smaller.
        super().__init__(OrderedDict([
            ("pad1", nn.ZeroPad2d((0, 1, 0, 1))),
            ("conv1", nn.Conv2d(channels, 64, kernel_size=2)),
            ("pool1", nn.MaxPool2d(2)),
            ("relu1", nn.ReLU(inplace=True)),
            ("drop1", FastDropout(0.3)),
            ("pad2", nn.ZeroPad2d((0, 1, 0, 1))),
            ("conv2", nn.Conv2d(64, 32, kernel_size=2)),
            ("pool2", nn.MaxPool2d(2)),
            ("relu2", nn.ReLU(inplace=True)),
            ("drop2", FastDropout(0.3)),
            ("flatten", nn.Flatten()),
        ]))  # fmt: skip
        keras_init(self)
        self.fused = fused
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) float images -> (N, 32 * (H // 4) * (W // 4)) features."""
        from tripletlab.models._conv_pool import conv_pool, conv_pool_applies  # numba: lazily

        if not (self.fused and conv_pool_applies(x, self.conv1.weight)):
            return super().forward(x)
        x = conv_pool(x, self.conv1.weight, self.conv1.bias)  # pad1, conv1, pool1
        x = self.drop1.after_relu(x)  # relu1, drop1
        x = self.drop2.after_relu(self.pool2(self.conv2(self.pad2(x))))  # relu2, drop2
        return self.flatten(x)

    @staticmethod
    def upgrade_state_dict(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """`state` with the position-indexed keys of older checkpoints (`1.weight`) renamed to
        the layers' names (`conv1.weight`); other keys unchanged."""
        renamed = {}
        for key, value in state.items():
            for old, new in _LEGACY_PREFIXES.items():
                if key.startswith(prefix + old):
                    key = prefix + new + key[len(prefix + old) :]
                    break
            renamed[key] = value
        return renamed


def _rename_legacy_keys(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: rename old position-indexed keys in place."""
    renamed = SeedCNNBackbone.upgrade_state_dict(state, prefix)
    if renamed.keys() != state.keys():
        state.clear()
        state.update(renamed)


@register_backbone("seed_cnn")
def _seed_cnn(channels: int, image_size: tuple[int, int]) -> nn.Module:
    del image_size  # fully convolutional up to the Flatten; the head sizes itself
    return SeedCNNBackbone(channels)
