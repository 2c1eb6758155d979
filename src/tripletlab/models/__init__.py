"""Backbones, the `Embedder` and the `TripletNet`."""

from tripletlab.models.backbones import backbone_names, build_backbone, register_backbone
from tripletlab.models.embedder import Embedder, Rescale
from tripletlab.models.triplet_net import TripletNet

__all__ = [
    "Embedder",
    "Rescale",
    "TripletNet",
    "backbone_names",
    "build_backbone",
    "register_backbone",
]
