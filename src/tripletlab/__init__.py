"""tripletlab: learn image similarity with triplet losses.

`tripletlab.Embedder` and `tripletlab.RunConfig` are imported on first use, so that importing a
sub-package that needs no PyTorch (`tripletlab.keras` on TensorFlow or JAX) does not load it.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

try:
    __version__ = metadata.version("tripletlab")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_LAZY = {"Embedder": "tripletlab.models", "RunConfig": "tripletlab.config"}

__all__ = ["Embedder", "RunConfig"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tripletlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
