"""Plots, the run report, the augmentation picture and search result grids."""

from tripletlab.viz.augment import AugmentGridCallback, write_augment_grid
from tripletlab.viz.report import build_report, nearest_neighbours, umap_2d
from tripletlab.viz.search_grid import search_grid

__all__ = [
    "AugmentGridCallback",
    "build_report",
    "nearest_neighbours",
    "search_grid",
    "umap_2d",
    "write_augment_grid",
]
