"""Galleries of a run: build its index from a data set (streamed in chunks), add and remove
images, calibrate thresholds on held-out images, and search or match images with the run's
model (`Searcher`). The index itself is `tripletlab.index`."""

from tripletlab.search.build import (
    add_images,
    build_index,
    calibrate_index,
    index_run,
    open_index,
    remove_items,
)
from tripletlab.search.gallery import SPLITS, Gallery, open_gallery
from tripletlab.search.predict import Prediction, Predictor, predictions
from tripletlab.search.query import Hit, Searcher, Verdict
from tripletlab.search.sources import read_image, read_images

__all__ = [
    "SPLITS",
    "Gallery",
    "Hit",
    "Prediction",
    "Predictor",
    "Searcher",
    "Verdict",
    "add_images",
    "build_index",
    "calibrate_index",
    "index_run",
    "open_gallery",
    "open_index",
    "predictions",
    "read_image",
    "read_images",
    "remove_items",
]
