"""Backbone registry: `build_backbone(name, channels=..., image_size=...)`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

BackboneFactory = Callable[[int, tuple[int, int]], nn.Module]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding a factory `f(channels, image_size) -> nn.Module` under `name`."""

    def add(factory: BackboneFactory) -> BackboneFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def backbone_names() -> list[str]:
    """Names accepted by `build_backbone`."""
    return sorted(_REGISTRY)


def build_backbone(
    name: str, *, channels: int = 1, image_size: tuple[int, int] = (28, 28)
) -> nn.Module:
    """Instantiate the backbone `name` for images of `channels` channels and `image_size`.

    The backbone maps float images (N, C, H, W) in [0, 1] to features (N, F).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name.startswith(("torchvision:", "timm:")):
        from tripletlab.models.adapters import build_adapter  # optional packages, on demand

        return build_adapter(name, channels)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; expected one of {', '.join(backbone_names())}, "
            "or torchvision:<model> / timm:<model> when that package is installed"
        )
    return _REGISTRY[name](channels, tuple(image_size))


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for convolutions and linear layers, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class FastDropout(nn.Module):
    """Dropout with cheap random masks; drop probability rounded to a multiple of 1/65536.

    PyTorch's CPU dropout draws one random number per element from a serial generator and
    took 27% of a batch-32 training step of the tutorial network. On the CPU (float32) masks
    come from a counter-based hash seeded by one draw from PyTorch's generator, applied in the
    same pass (`tripletlab.models._dropout`); elsewhere four 16-bit uniforms are cut from each
    64-bit draw. p = 0.3 becomes 0.300003. Outputs are scaled by 1 / (1 - p) in training and
    unchanged in eval mode, like `nn.Dropout`.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return self._drop(x, relu=False)

    def after_relu(self, x: Tensor) -> Tensor:
        """self(relu(x)) in one pass where it can: the ReLU and this dropout fused."""
        return self._drop(x, relu=True)

    def _drop(self, x: Tensor, relu: bool) -> Tensor:
        if not self.training or self.p == 0.0:
            return torch.relu(x) if relu else x
        from tripletlab.models._dropout import dropout_threshold, fast_dropout  # numba: lazily

        if x.device.type == "cpu" and x.dtype == torch.float32:
            return fast_dropout(x, self.p, relu=relu)
        x = torch.relu(x) if relu else x
        count = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64,
                              device=x.device)  # fmt: skip
        threshold = dropout_threshold(self.p) - 32768  # keep where the int16 draw >= this
        keep = draws.view(torch.int16)[:count].view(x.shape) >= threshold
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SeedCNNBackbone(nn.Sequential):
    """The network of TF Addons' TripletSemiHardLoss tutorial, up to its Flatten.

    Conv 64 (2x2, same, ReLU) -> MaxPool 2 -> Dropout 0.3 -> Conv 32 (2x2, same, ReLU)
    -> MaxPool 2 -> Dropout 0.3 -> Flatten. (N, C, 28, 28) -> (N, 32 * 7 * 7).
    """

    def __init__(self, channels: int = 1) -> None:
        super().__init__(
            # TF's "same" padding for a 2x2 kernel: one zero row and column after the image.
            # An explicit pad avoids the slower padded copy PyTorch makes for padding="same".
            # Pooling before the ReLU computes exactly the same values and gradients (the
            # ReLU is monotone, so it commutes with max) on a tensor four times smaller.
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.Conv2d(channels, 64, kernel_size=2),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            FastDropout(0.3),
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.Conv2d(64, 32, kernel_size=2),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            FastDropout(0.3),
            nn.Flatten(),
        )
        keras_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) float images -> (N, 32 * (H // 4) * (W // 4)) features."""
        from tripletlab.models._conv_pool import conv_pool, conv_pool_applies  # numba: lazily

        layers = list(self)  # slicing an nn.Sequential would build a new backbone
        if not conv_pool_applies(x, layers):
            return super().forward(x)
        pad, conv, pool, _, dropout = layers[5:10]
        x = conv_pool(x, layers[1].weight, layers[1].bias)  # layers 0-2 in one pass
        x = layers[4].after_relu(x)  # layers 3-4 in one pass
        x = dropout.after_relu(pool(conv(pad(x))))
        return layers[10](x)


@register_backbone("seed_cnn")
def _seed_cnn(channels: int, image_size: tuple[int, int]) -> nn.Module:
    del image_size  # fully convolutional up to the Flatten; the head sizes itself
    return SeedCNNBackbone(channels)


class SpikeCNNBackbone(nn.Sequential):
    """The shared network of the triplet-loss MNIST project.

    Conv 32 (3x3, ReLU) -> MaxPool 2 -> Conv 32 (3x3, ReLU) -> MaxPool 2 -> Dropout 0.25
    -> Flatten -> Dense 128 (ReLU). (N, C, H, W) -> (N, 128).
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


def feature_size(backbone: nn.Module, channels: int, image_size: tuple[int, int]) -> int:
    """Number of features the backbone produces for one image of `image_size`."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, channels, *image_size))
    backbone.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"backbone must return (N, F) features, got shape {tuple(out.shape)}")
    return int(out.shape[1])
