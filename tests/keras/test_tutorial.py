"""The TF Addons tutorial's model code, unchanged except for the import, on 2,000 MNIST images:
in Keras 3 form on every backend, and verbatim (`tf.keras`, `tf.math.l2_normalize`, a
`tf.data` pipeline) on TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tripletlab.keras import TripletSemiHardLoss, load_mnist  # noqa: E402  (was: tfa.losses)


@pytest.fixture(scope="module")
def mnist_2000():
    (images, labels), _ = load_mnist()
    return images[:2000], labels[:2000]


@pytest.mark.slow
def test_tutorial_model_trains_and_the_loss_goes_down(mnist_2000):
    keras.utils.set_random_seed(0)
    images = (mnist_2000[0].astype("float32") / 255.0)[..., None]
    labels = mnist_2000[1]
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


@pytest.mark.slow
def test_the_tutorial_code_verbatim_on_tensorflow(mnist_2000):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tutorial's own code is TensorFlow code (make test-keras runs it)")
    import tensorflow as tf

    import tripletlab.keras as tfa_losses  # the one changed line: was tensorflow_addons

    tf.keras.utils.set_random_seed(0)

    def _normalize_img(img, label):
        img = tf.cast(img, tf.float32) / 255.0
        return (img, label)

    # tfds.load("mnist", as_supervised=True) gives (28, 28, 1) uint8 images: the same here.
    train_dataset = tf.data.Dataset.from_tensor_slices((mnist_2000[0][..., None], mnist_2000[1]))
    train_dataset = train_dataset.shuffle(1024).batch(32)
    train_dataset = train_dataset.map(_normalize_img)
    model = tf.keras.Sequential([
        tf.keras.layers.Conv2D(filters=64, kernel_size=2, padding='same', activation='relu', input_shape=(28,28,1)),  # noqa: E501
        tf.keras.layers.MaxPooling2D(pool_size=2),
        tf.keras.layers.Dropout(0.3),
        tf.keras.layers.Conv2D(filters=32, kernel_size=2, padding='same', activation='relu'),
        tf.keras.layers.MaxPooling2D(pool_size=2),
        tf.keras.layers.Dropout(0.3),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(256, activation=None), # No activation on final dense layer
        tf.keras.layers.Lambda(lambda x: tf.math.l2_normalize(x, axis=1)) # L2 normalize embeddings
    ])  # fmt: skip
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001), loss=tfa_losses.TripletSemiHardLoss())
    history = model.fit(train_dataset, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[1] < losses[0] < 1.0, losses
    results = model.predict(train_dataset.take(2), verbose=0)
    assert results.shape == (64, 256)
    np.testing.assert_allclose(np.linalg.norm(results, axis=1), 1.0, rtol=1e-5)


def test_load_mnist_reads_the_prepared_copy_or_says_how_to_prepare_it(tmp_path, mnist_2000):
    images, labels = mnist_2000
    assert images.dtype == np.uint8 and images.shape == (2000, 28, 28)
    assert set(np.unique(labels)) == set(range(10))
    with pytest.raises(FileNotFoundError, match="tripletlab data prepare mnist"):
        load_mnist(tmp_path)
