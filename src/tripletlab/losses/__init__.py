"""Triplet losses on a batch of embeddings, with TF Addons semantics."""

from tripletlab.config import LOSS_NAMES, LossName
from tripletlab.losses.batch_all import TripletBatchAllLoss, triplet_batch_all_loss
from tripletlab.losses.classification import ClassificationLoss
from tripletlab.losses.distances import DISTANCES, Distance, pairwise_distance
from tripletlab.losses.factory import build_loss
from tripletlab.losses.hard import TripletHardLoss, triplet_hard_loss
from tripletlab.losses.margin import TripletMarginLoss, triplet_gaps, triplet_margin_loss
from tripletlab.losses.semihard import TripletSemiHardLoss, triplet_semihard_loss

__all__ = [
    "DISTANCES",
    "LOSS_NAMES",
    "ClassificationLoss",
    "Distance",
    "LossName",
    "TripletBatchAllLoss",
    "TripletHardLoss",
    "TripletMarginLoss",
    "TripletSemiHardLoss",
    "build_loss",
    "pairwise_distance",
    "triplet_batch_all_loss",
    "triplet_gaps",
    "triplet_hard_loss",
    "triplet_margin_loss",
    "triplet_semihard_loss",
]
