"""The TF Addons tutorial's model code, unchanged except for the import, on 2,000 MNIST images."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tripletlab.data import load_mnist  # noqa: E402
from tripletlab.keras import TripletSemiHardLoss  # noqa: E402  (was: tfa.losses)


@pytest.mark.slow
def test_tutorial_model_trains_and_the_loss_goes_down():
    keras.utils.set_random_seed(0)
    train = load_mnist("train")
    images = (train.images[:2000].astype("float32") / 255.0)[..., None]
    labels = train.labels[:2000]
    model = keras.Sequential([
        keras.layers.Conv2D(filters=64, kernel_size=2, padding="same", activation="relu",
                            input_shape=(28, 28, 1)),
        keras.layers.MaxPooling2D(pool_size=2),
        keras.layers.Dropout(0.3),
        keras.layers.Conv2D(filters=32, kernel_size=2, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(pool_size=2),
        keras.layers.Dropout(0.3),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation=None),  # No activation on final dense layer
        keras.layers.Lambda(lambda x: keras.ops.normalize(x, axis=1)),  # L2 normalize embeddings
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=TripletSemiHardLoss())
    before = model.evaluate(images, labels, batch_size=32, verbose=0)
    history = model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    after = model.evaluate(images, labels, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert after < before - 0.1, (before, after)
