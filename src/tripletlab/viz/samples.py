"""`plots/samples.png`: nine training images with their labels (the Keras guide's first look
at the data), also shown in TensorBoard under `train/samples`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from tripletlab.data import ImageSet
from tripletlab.training import Callback, TensorBoardCallback
from tripletlab.viz.plots import DPI


def samples_figure(images: ImageSet, count: int = 9, seed: int = 0) -> plt.Figure:
    """A 3 x 3 grid of `count` training images chosen at random (fixed by `seed`), each
    titled with its class name."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), min(count, len(images)),
                                                        replace=False))  # fmt: skip
    figure, axes = plt.subplots(3, 3, figsize=(6, 6.4))
    for axis in axes.flat:
        axis.axis("off")
    for axis, position in zip(axes.flat, chosen, strict=False):
        image, label = images.images[position], int(images.labels[position])
        names = images.class_names
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        axis.set_title(names[label] if label < len(names) else str(label), fontsize=10)
    figure.suptitle("Training images")
    return figure


def write_samples(images: ImageSet, path: Path, seed: int = 0) -> Path:
    """`samples_figure` saved as a PNG at `path`."""
    figure = samples_figure(images, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


class SamplesCallback(Callback):
    """Writes `plots/samples.png` when training starts, and the same figure to TensorBoard
    (`train/samples`) when the run logs there."""

    def on_train_start(self, trainer: Any) -> None:
        if not len(trainer.train_set):
            return
        seed = trainer.config.train.seed
        write_samples(trainer.train_set, trainer.run.samples_file, seed)
        for callback in trainer.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.writer is not None:
                callback.writer.add_figure("train/samples", samples_figure(trainer.train_set,
                                                                           seed=seed))  # fmt: skip
                callback.writer.flush()
