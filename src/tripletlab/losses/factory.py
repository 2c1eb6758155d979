"""Build a loss module from its configuration."""

from __future__ import annotations

from torch import nn

from tripletlab.config import LossConfig
from tripletlab.losses.batch_all import TripletBatchAllLoss
from tripletlab.losses.hard import TripletHardLoss
from tripletlab.losses.semihard import TripletSemiHardLoss


def build_loss(config: LossConfig) -> nn.Module:
    """The in-batch loss module `config` names ("semihard", "hard" or "batch-all"), with its
    margin, distance and (hard loss) soft margin. The config checked the values when built."""
    if config.name == "hard":
        return TripletHardLoss(margin=config.margin, soft=config.soft, distance=config.distance)
    if config.name == "batch-all":
        return TripletBatchAllLoss(margin=config.margin, distance=config.distance)
    return TripletSemiHardLoss(margin=config.margin, distance=config.distance)
