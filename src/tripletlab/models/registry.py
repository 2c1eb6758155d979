"""Backbone registry: `build_backbone(name, channels=..., image_size=...)` over named factories.

Backbones come from three places: tripletlab's own (`seed_cnn`, `spike_cnn`, `resnet_small`,
registered when `tripletlab.models` is imported); installed packages that declare an entry
point in the group `tripletlab.backbones` (`my_net = "my_package.backbones"` imports the
module, which registers; `my_net = "my_package.backbones:build"` registers that factory as
`my_net`), loaded when a name is not found otherwise; and the user's own modules, imported by
`tripletlab --import MODULE` (the working directory searched too) and recorded in the run's
config (`model.imports`). A run's recorded modules are imported again when it is loaded, but
only from the installed packages and PYTHONPATH, never from the working directory: opening a
run folder from elsewhere cannot run code that came with it. `torchvision:<model>` and
`timm:<model>` go to the optional adapters.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from importlib import metadata

from torch import nn

from tripletlab.models.adapters import PREFIXES

log = logging.getLogger(__name__)

BackboneFactory = Callable[[int, tuple[int, int]], nn.Module]
ENTRY_POINT_GROUP = "tripletlab.backbones"
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(
    name: str, *, replace: bool = False
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding a factory `f(channels, image_size) -> nn.Module` under `name`.

    The module returned maps float images (N, C, H, W) in [0, 1] to features (N, F).

    Raises:
        ValueError: `name` is taken by another factory (unless `replace`).
    """

    def add(factory: BackboneFactory) -> BackboneFactory:
        if not replace and _REGISTRY.get(name, factory) is not factory:
            raise ValueError(f"a backbone named {name!r} is registered already")
        _REGISTRY[name] = factory
        return factory

    return add


def backbone_names() -> list[str]:
    """Names accepted by `build_backbone` (entry points of installed packages included)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def import_backbone_modules(modules: Iterable[str], *, working_dir: bool = False) -> None:
    """Import modules that register backbones (a no-op for those imported already).

    Args:
        modules: dotted module names.
        working_dir: search the working directory too, as `python -m` does, for modules the
            user named (`--import`); never for names read from a run folder.
    Raises:
        ValueError: a module that cannot be imported, or whose import fails (says why).
    """
    for name in modules:
        if name in sys.modules:
            continue
        added = working_dir and "" not in sys.path
        if added:
            sys.path.insert(0, "")
        try:
            importlib.import_module(name)
        except Exception as error:  # the user's module may raise anything: one clear line
            raise ValueError(
                f"cannot import backbone module {name!r}: {type(error).__name__}: {error}"
            ) from error
        finally:
            if added:
                sys.path.remove("")


def check_backbone(name: str, imports: Iterable[str] = ()) -> None:
    """Refuse a backbone name nobody registered: not tripletlab's own, not from an entry point,
    not from the modules `imports` (a run's `model.imports`, imported without the working
    directory).

    Raises:
        ValueError: the name is unknown (the message lists the known ones and how to add one).
    """
    if name.startswith(PREFIXES) or name in _REGISTRY:
        return
    _load_entry_points()
    if name in _REGISTRY:
        return
    imports = list(imports)
    problem = ""
    try:
        import_backbone_modules(imports)
    except ValueError as error:
        problem = f" ({error})"
    if name in _REGISTRY:
        return
    if imports:
        modules = " ".join(f"--import {module}" for module in imports)
        raise ValueError(
            f"unknown backbone {name!r}: the run recorded model.imports {imports}{problem}; "
            f"run `tripletlab {modules} ...` (the working directory is searched only for "
            "modules named on the command line)"
        )
    raise ValueError(
        f"unknown backbone {name!r}; expected one of {', '.join(sorted(_REGISTRY))}, "
        "torchvision:<model> / timm:<model> when that package is installed, or a backbone "
        "registered with @register_backbone in a module given with --import MODULE or "
        f"declared as a {ENTRY_POINT_GROUP!r} entry point"
    )


def build_backbone(
    name: str,
    *,
    channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    imports: Iterable[str] = (),
) -> nn.Module:
    """Instantiate the backbone `name` for images of `channels` channels and `image_size`.

    Raises:
        ValueError: unknown name (see `check_backbone`).
    """
    if name.startswith(PREFIXES):
        from tripletlab.models.adapters import build_adapter  # optional packages, on demand

        return build_adapter(name, channels)
    check_backbone(name, imports)
    return _REGISTRY[name](channels, tuple(image_size))


def _load_entry_points() -> None:
    """Register the backbones of installed packages' `tripletlab.backbones` entry points. A
    broken entry point is logged and skipped: it must not stop the built-in backbones."""
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _REGISTRY:
            continue
        try:
            loaded = entry.load()
        except Exception as error:  # any error of a third-party module
            log.warning("backbone entry point %s (%s) failed: %s", entry.name, entry.value, error)
            continue
        if callable(loaded) and entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = loaded
