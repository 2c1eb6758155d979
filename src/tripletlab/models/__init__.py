"""Backbones, the `Embedder` and the `TripletNet`."""

from tripletlab.models import resnet_small  # noqa: F401  (registers the backbone)
from tripletlab.models.backbones import backbone_names, build_backbone, register_backbone
from tripletlab.models.embedder import Embedder, Rescale
from tripletlab.models.freezing import freeze, parameter_counts, set_train_mode, summary, unfreeze
from tripletlab.models.triplet_net import TripletNet

__all__ = [
    "Embedder",
    "Rescale",
    "TripletNet",
    "backbone_names",
    "build_backbone",
    "freeze",
    "parameter_counts",
    "register_backbone",
    "set_train_mode",
    "summary",
    "unfreeze",
]
