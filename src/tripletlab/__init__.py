"""tripletlab: learn image similarity with triplet losses."""

from tripletlab.config import RunConfig
from tripletlab.models import Embedder

__all__ = ["Embedder", "RunConfig"]
__version__ = "0.1.0"
