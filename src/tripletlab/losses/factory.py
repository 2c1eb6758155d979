"""Build a loss module from its configuration."""

from __future__ import annotations

from torch import nn

from tripletlab.config.sections import LOSS_NAMES, LossName
from tripletlab.losses.batch_all import TripletBatchAllLoss
from tripletlab.losses.distances import check_distance
from tripletlab.losses.hard import TripletHardLoss
from tripletlab.losses.semihard import TripletSemiHardLoss


def build_loss(
    name: LossName, *, margin: float = 1.0, distance: str = "L2", soft: bool = False
) -> nn.Module:
    """Return the loss module called `name` ("semihard", "hard" or "batch-all").

    Raises:
        ValueError: for an unknown name or distance, or `soft` with a loss other than "hard".
    """
    distance = check_distance(distance)
    if name == "semihard":
        loss: nn.Module = TripletSemiHardLoss(margin=margin, distance=distance)
    elif name == "hard":
        loss = TripletHardLoss(margin=margin, soft=soft, distance=distance)
    elif name == "batch-all":
        loss = TripletBatchAllLoss(margin=margin, distance=distance)
    else:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    if soft and name != "hard":
        raise ValueError("soft=True applies only to the 'hard' loss")
    return loss
