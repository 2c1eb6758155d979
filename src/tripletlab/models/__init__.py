"""Backbones and the `Embedder`."""

from tripletlab.models.backbones import backbone_names, build_backbone, register_backbone
from tripletlab.models.embedder import Embedder, Rescale

__all__ = ["Embedder", "Rescale", "backbone_names", "build_backbone", "register_backbone"]
