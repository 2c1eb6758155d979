"""The report's plots draw what they are given."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tripletlab.viz.plots import distance_histogram


def _coloured_pixels(path) -> int:
    """Pixels of the bars: coloured, where axes, text and grid are grey."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((pixels.max(axis=2) - pixels.min(axis=2) > 40).sum())


def test_collapsed_embeddings_show_as_a_bar_at_zero(tmp_path):
    """Every distance 0 (embeddings collapsed to one point) gave an empty plot: 80 bins of
    width 0. The plot that should show the failure showed nothing."""
    same = np.arange(40) % 2 == 0
    for distances, name in ((np.zeros(40), "collapsed"), (np.linspace(0, 2, 40), "spread")):
        path = distance_histogram(distances, same, None, tmp_path / f"{name}.png")
        assert _coloured_pixels(path) > 2000, name  # the legend's two patches: about 400
