"""The neighbours of searched images as a grid (the report's neighbour grid, reused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tripletlab.search import Hit, Searcher
from tripletlab.viz.plots import neighbours_grid


def search_grid(
    searcher: Searcher, references: list[str], results: list[list[Hit]], path: Path
) -> Path:
    """Each query image, then its neighbours (read from their sources; blank where a source
    cannot be read) captioned with label and distance. Returns `path`."""
    size, channels = searcher.size, searcher.channels
    shape = (*size,) if channels == 1 else (*size, 3)
    blank = np.full(shape, 255, dtype=np.uint8)
    images, labels, captions = [], [], []
    queries = np.zeros(len(references), dtype=np.int64)
    k = max([len(hits) for hits in results] + [1])
    neighbours = np.full((len(references), k), -1, dtype=np.int64)
    names = searcher.index.class_names
    for row, (reference, hits) in enumerate(zip(references, results, strict=True)):
        queries[row] = len(images)
        images.append(searcher.embed_input(reference))
        labels.append(-1)
        for col, hit in enumerate(hits):
            neighbours[row, col] = len(images)
            image = searcher.item_image(hit.source)
            images.append(blank if image is None else image)
            labels.append(names.index(hit.label) if hit.label in names else -1)
        captions.append([f"{hit.label} {hit.distance:.3f}" for hit in hits])
    title = f"Nearest gallery items of {len(references)} images (label, distance)"
    return neighbours_grid(np.stack(images), np.array(labels), queries, neighbours, names,
                           Path(path), title=title, captions=captions)  # fmt: skip
