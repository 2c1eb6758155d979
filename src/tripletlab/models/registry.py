"""Backbone registry: `build_backbone(name, channels=..., image_size=...)` over named factories.

Backbones come from three places: tripletlab's own (`seed_cnn`, `spike_cnn`, `resnet_small`,
registered when `tripletlab.models` is imported); the user's modules, named in
`ModelConfig.imports` (the `--import` flag) and recorded in the run's config, so that every
later command imports them again; and installed packages that declare an entry point in the
group `tripletlab.backbones` (`my_net = "my_package.backbones"` imports the module, which
registers; `my_net = "my_package.backbones:build"` registers that factory as `my_net`).
`torchvision:<model>` and `timm:<model>` go to the optional adapters.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from importlib import metadata

import torch
from torch import nn

from tripletlab.models.adapters import PREFIXES

log = logging.getLogger(__name__)

BackboneFactory = Callable[[int, tuple[int, int]], nn.Module]
ENTRY_POINT_GROUP = "tripletlab.backbones"
_REGISTRY: dict[str, BackboneFactory] = {}
_entry_points_loaded = False


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding a factory `f(channels, image_size) -> nn.Module` under `name`.

    The module returned maps float images (N, C, H, W) in [0, 1] to features (N, F).
    """

    def add(factory: BackboneFactory) -> BackboneFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def backbone_names() -> list[str]:
    """Names accepted by `build_backbone` (entry points of installed packages included)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def import_backbone_modules(modules: Iterable[str]) -> None:
    """Import the user's modules that register backbones (a no-op for those imported already).

    The working directory is searched too, as `uvicorn` and `python -m` do, so that a
    `my_backbones.py` beside the run works with the `tripletlab` command.

    Raises:
        ValueError: a module that cannot be imported (the message says why).
    """
    for name in modules:
        if name in sys.modules:
            continue
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"cannot import backbone module {name!r}: {error}") from error


def check_backbone(name: str, imports: Iterable[str] = ()) -> None:
    """Refuse a backbone name nobody registered, after importing `imports`.

    Raises:
        ValueError: the name is unknown (the message lists the known ones and how to add one).
    """
    if name.startswith(PREFIXES):
        return
    import_backbone_modules(imports)
    if name not in backbone_names():
        raise ValueError(
            f"unknown backbone {name!r}; expected one of {', '.join(backbone_names())}, "
            "torchvision:<model> / timm:<model> when that package is installed, or a backbone "
            "registered with @register_backbone in a module given with --import MODULE or "
            f"declared as a {ENTRY_POINT_GROUP!r} entry point"
        )


def build_backbone(
    name: str, *, channels: int = 1, image_size: tuple[int, int] = (28, 28)
) -> nn.Module:
    """Instantiate the backbone `name` for images of `channels` channels and `image_size`.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name.startswith(PREFIXES):
        from tripletlab.models.adapters import build_adapter  # optional packages, on demand

        return build_adapter(name, channels)
    check_backbone(name)
    return _REGISTRY[name](channels, tuple(image_size))


def _load_entry_points() -> None:
    """Register the backbones of installed packages' `tripletlab.backbones` entry points, once.
    A broken entry point is logged and skipped: it must not stop the built-in backbones."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as error:  # any error of a third-party module
            log.warning("backbone entry point %s (%s) failed: %s", entry.name, entry.value, error)
            continue
        if callable(loaded) and entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = loaded


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for convolutions and linear layers, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def feature_size(backbone: nn.Module, channels: int, image_size: tuple[int, int]) -> int:
    """Number of features the backbone produces for one image of `image_size`.

    Raises:
        ValueError: the backbone does not return (N, F) features.
    """
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, channels, *image_size))
    backbone.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"backbone must return (N, F) features, got shape {tuple(out.shape)}")
    return int(out.shape[1])
