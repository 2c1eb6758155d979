"""Named data sets and the train / validation / test parts of a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tripletlab.config import DataConfig
from tripletlab.data.images import ImageSet
from tripletlab.data.mnist import load_mnist

DATASETS = ("mnist",)


@dataclass(frozen=True)
class RunData:
    """The images of a run: training, held-out validation (part of training data), and test."""

    train: ImageSet
    val: ImageSet
    test: ImageSet

    def reference(self) -> ImageSet:
        """All training images (train + validation), the gallery of k-NN evaluation."""
        return ImageSet(
            np.concatenate([self.train.images, self.val.images]),
            np.concatenate([self.train.labels, self.val.labels]),
            self.train.class_names,
        )


def load_run_data(config: DataConfig, seed: int = 0) -> RunData:
    """Load the data set, keep `limit` training images, hold out `val_fraction` of them.

    Both choices are random but fixed by `seed`, so `evaluate` sees the same parts as `train`.

    Raises:
        ValueError: unknown data set, or settings that leave no training images.
    """
    if config.dataset != "mnist":
        raise ValueError(
            f"unknown dataset {config.dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    train, test = load_mnist("train"), load_mnist("test")
    order = np.random.default_rng(seed).permutation(len(train))
    if config.limit is not None:
        if config.limit < 2:
            raise ValueError(f"--limit must be at least 2, got {config.limit}")
        order = order[: config.limit]
    if not 0.0 <= config.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    num_val = round(len(order) * config.val_fraction)
    val_part, train_part = np.sort(order[:num_val]), np.sort(order[num_val:])
    return RunData(train.subset(train_part), train.subset(val_part), test)
