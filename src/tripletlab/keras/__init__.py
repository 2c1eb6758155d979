"""Keras 3 triplet losses with TF Addons' names and semantics (optional extra: keras).

    # before: import tensorflow_addons as tfa; loss = tfa.losses.TripletSemiHardLoss()
    from tripletlab.keras import TripletSemiHardLoss
    loss = TripletSemiHardLoss()

Importing `tripletlab` itself never imports Keras; only this sub-package does.
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

from tripletlab.keras.losses import (
    TripletHardLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_semihard_loss,
)

__all__ = ["TripletHardLoss", "TripletSemiHardLoss", "triplet_hard_loss", "triplet_semihard_loss"]
