"""Plots and the run report."""

from tripletlab.viz.report import build_report, nearest_neighbours, umap_2d

__all__ = ["build_report", "nearest_neighbours", "umap_2d"]
