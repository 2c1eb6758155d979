"""Build a loss module from its configuration."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from tripletlab.config import LossConfig
from tripletlab.losses.batch_all import TripletBatchAllLoss
from tripletlab.losses.classification import ClassificationLoss
from tripletlab.losses.hard import TripletHardLoss
from tripletlab.losses.semihard import TripletSemiHardLoss


def build_loss(config: LossConfig, classes: tuple[int, ...] = ()) -> nn.Module:
    """The in-batch loss module `config` names, with its margin, distance and (hard loss) soft
    margin: `(embeddings, labels) -> loss` for "semihard", "hard" and "batch-all"; a
    `ClassificationLoss` `(embeddings, logits, labels) -> loss` over the classifier outputs
    `classes` for "cross-entropy" and "<triplet>+ce". The config checked the values when built.

    Raises:
        ValueError: a classifying loss without at least two `classes`.
    """
    if config.classifies:
        triplet = config.triplet
        inner = build_loss(replace(config, name=triplet, ce_weight=1.0)) if triplet else None
        return ClassificationLoss(classes, inner, config.ce_weight)
    if config.name == "hard":
        return TripletHardLoss(margin=config.margin, soft=config.soft, distance=config.distance)
    if config.name == "batch-all":
        return TripletBatchAllLoss(margin=config.margin, distance=config.distance)
    return TripletSemiHardLoss(margin=config.margin, distance=config.distance)
