"""Plots, the run report and the augmentation picture."""

from tripletlab.viz.augment import AugmentGridCallback, write_augment_grid
from tripletlab.viz.report import build_report, nearest_neighbours, umap_2d

__all__ = [
    "AugmentGridCallback",
    "build_report",
    "nearest_neighbours",
    "umap_2d",
    "write_augment_grid",
]
