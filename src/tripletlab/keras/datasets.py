"""MNIST for Keras users, offline: tripletlab's prepared copy as NumPy arrays, in the layout
of `keras.datasets.mnist.load_data()`. Reads no PyTorch (works on TensorFlow and JAX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tripletlab.utils.io import MNIST_FILE, cache_dir, verified_file


def load_mnist(
    cache: str | Path | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`((x_train, y_train), (x_test, y_test))`: uint8 images (60000, 28, 28) and (10000, 28,
    28), uint8 labels, from `$TRIPLETLAB_CACHE/mnist.npz` (checked against its SHA-256 record;
    read without pickle).

    Raises:
        FileNotFoundError: MNIST was not prepared, or its file fails its checksum (the message
            says how to prepare it).
    """
    path = Path(cache or cache_dir()) / MNIST_FILE
    if not verified_file(path):
        raise FileNotFoundError(
            f"no verified MNIST at {path}: prepare it once with `tripletlab data prepare mnist` "
            "(or `make data`) in an environment with tripletlab's dependencies, with the same "
            "TRIPLETLAB_CACHE"
        )
    with np.load(path, allow_pickle=False) as arrays:
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
