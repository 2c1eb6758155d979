"""tripletlab: learn image similarity with triplet losses."""

from importlib import metadata

from tripletlab.config import RunConfig
from tripletlab.models import Embedder

try:
    __version__ = metadata.version("tripletlab")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Embedder", "RunConfig"]
