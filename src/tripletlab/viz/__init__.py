"""Plots, the run report, the augmentation picture and search result grids."""

from tripletlab.viz.augment import AugmentGridCallback, write_augment_grid
from tripletlab.viz.report import build_report, nearest_neighbours, umap_2d
from tripletlab.viz.samples import SamplesCallback, samples_figure, write_samples
from tripletlab.viz.search_grid import search_grid

__all__ = [
    "AugmentGridCallback",
    "SamplesCallback",
    "build_report",
    "nearest_neighbours",
    "samples_figure",
    "search_grid",
    "umap_2d",
    "write_augment_grid",
    "write_samples",
]
