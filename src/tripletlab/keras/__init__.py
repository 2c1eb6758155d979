"""Keras 3 triplet losses with TF Addons' names and semantics (optional extra: keras).

    # before: import tensorflow_addons as tfa; loss = tfa.losses.TripletSemiHardLoss()
    from tripletlab.keras import TripletSemiHardLoss
    loss = TripletSemiHardLoss()

Importing `tripletlab` itself never imports Keras; only this sub-package does. Nor does this
sub-package import PyTorch: it runs on the TensorFlow, JAX and PyTorch backends, and installs
without tripletlab's other dependencies (`pip install --no-deps tripletlab keras`).
`load_mnist()` gives tripletlab's offline MNIST in `keras.datasets.mnist` layout.
"""

try:
    import keras  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    if error.name == "keras":
        raise ImportError(
            "tripletlab.keras needs Keras 3: pip install 'tripletlab[keras]'"
        ) from error
    raise ImportError(
        f"Keras could not load its backend ({error}); Keras uses TensorFlow unless told "
        "otherwise: set KERAS_BACKEND=torch (or jax) before importing it"
    ) from error

from tripletlab.keras.datasets import load_mnist
from tripletlab.keras.losses import (
    TripletHardLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_semihard_loss,
)

__all__ = [
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "load_mnist",
    "triplet_hard_loss",
    "triplet_semihard_loss",
]
