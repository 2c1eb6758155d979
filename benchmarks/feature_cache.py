"""The Keras guide's feature extraction: training a new head on a frozen `resnet_small` at
64 px, with the backbone's outputs cached once (tripletlab's default where it applies) against
running the frozen backbone every step (`train.feature_cache false`), in the same run.

Data: 10,000 MNIST training images enlarged to 64 x 64 (each pixel 2 x 2, a 4-pixel border).
Each setting trains two epochs of the frozen phase, alternately (A, B, A, B), and the median
epoch time is compared; the cache's one-off pass over the images is reported beside it.
Run: `make bench` or `python benchmarks/feature_cache.py [--images N]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from _common import console, show

from tripletlab.config import RunConfig, merge
from tripletlab.data import ImageSet, load_mnist
from tripletlab.training import Trainer


def enlarged_mnist(count: int) -> ImageSet:
    """`count` MNIST training images at 64 x 64."""
    mnist = load_mnist("train").subset(np.arange(count))
    big = mnist.images.repeat(2, axis=1).repeat(2, axis=2)
    return ImageSet(np.pad(big, ((0, 0), (4, 4), (4, 4))), mnist.labels, mnist.class_names)


def train(images: ImageSet, cache: bool) -> tuple[list[float], float]:
    """Epoch times of a frozen-backbone phase, and the whole fit's time."""
    config = merge(RunConfig(), {
        "model": {"backbone": "resnet_small", "image_size": [64, 64], "embedding_dim": 64},
        "train": {"batch_size": 64, "feature_cache": cache},
        "phases": [{"epochs": 2, "lr": 1e-3, "freeze": "backbone"}],
    })  # fmt: skip
    trainer = Trainer(config)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        history = trainer.fit(images, run_dir=folder)
        total = time.perf_counter() - start
    return [epoch["seconds"] for epoch in history.epochs], total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    images = enlarged_mnist(args.images)
    epochs: dict[bool, list[float]] = {True: [], False: []}
    totals: dict[bool, list[float]] = {True: [], False: []}
    for cache in (True, False, True, False):  # alternate: the machine's speed drifts
        seconds, total = train(images, cache)
        epochs[cache] += seconds
        totals[cache].append(total)
        console.print(f"cache {cache}: epochs {', '.join(f'{s:.2f}' for s in seconds)} s")
    cached, direct = (statistics.median(epochs[c]) for c in (True, False))
    rows = [
        ["backbone every step", direct, args.images / direct, statistics.median(totals[False])],
        ["cached features", cached, args.images / cached, statistics.median(totals[True])],
    ]
    show(f"Frozen resnet_small at 64 px, {args.images:,} images, batch 64: one head epoch",
         ["setting", "s / epoch", "images / s", "2-epoch fit s"], rows)  # fmt: skip
    console.print(f"speed-up per epoch: {direct / cached:.1f}x (the cache's one pass over the "
                  "images is in the cached fit's time)")  # fmt: skip


if __name__ == "__main__":
    main()
