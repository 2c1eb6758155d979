"""Backbones, the `Embedder` and the `TripletNet`."""

# Importing the backbone modules registers them.
from tripletlab.models import resnet, resnet_small, seed_cnn, spike_cnn  # noqa: F401
from tripletlab.models.embedder import Embedder, Rescale
from tripletlab.models.fast_dropout import FastDropout
from tripletlab.models.freezing import evaluating, freeze, set_train_mode, unfreeze
from tripletlab.models.registry import (
    backbone_names,
    build_backbone,
    check_backbone,
    import_backbone_modules,
    register_backbone,
)
from tripletlab.models.seed_cnn import SeedCNNBackbone
from tripletlab.models.spike_cnn import SpikeCNNBackbone
from tripletlab.models.summary import layer_by_layer, parameter_counts, summary
from tripletlab.models.triplet_net import TripletNet

__all__ = [
    "Embedder",
    "FastDropout",
    "Rescale",
    "SeedCNNBackbone",
    "SpikeCNNBackbone",
    "TripletNet",
    "backbone_names",
    "build_backbone",
    "check_backbone",
    "evaluating",
    "freeze",
    "import_backbone_modules",
    "layer_by_layer",
    "parameter_counts",
    "register_backbone",
    "set_train_mode",
    "summary",
    "unfreeze",
]
