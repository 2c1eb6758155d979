"""Optional backbones from torchvision and timm: `torchvision:resnet18`, `timm:resnet18`.

Neither package is a dependency: they are imported only when such a name is asked for, and
weights never come from a hub; give a local file with `--backbone-weights`. The classifier is
removed, so the backbone returns pooled features (N, F).
"""

from __future__ import annotations

import importlib

from torch import nn

PREFIXES = ("torchvision:", "timm:")


def _require(module: str):
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ValueError(
            f"a {package} backbone was asked for, but {package} is not installed "
            f"(pip install {package}); tripletlab works without it"
        ) from error


def build_adapter(name: str, channels: int) -> nn.Module:
    """Build `torchvision:<model>` or `timm:<model>` without pretrained weights.

    Raises:
        ValueError: the package is missing, or the model is unknown or cannot take `channels`.
    """
    package, _, model_name = name.partition(":")
    if package == "timm":
        timm = _require("timm")
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=channels)
        except RuntimeError as error:  # timm's error for an unknown model
            raise ValueError(f"timm has no model {model_name!r}") from error
    models = _require("torchvision.models")
    try:
        model = models.get_model(model_name, weights=None)
    except ValueError as error:
        raise ValueError(f"torchvision has no model {model_name!r}") from error
    for attribute in ("fc", "classifier", "head", "heads"):
        if hasattr(model, attribute):
            setattr(model, attribute, nn.Identity())
            break
    if channels != 3:
        raise ValueError(
            f"torchvision models take 3-channel images; use --channels 3, not {channels}"
        )
    return model
