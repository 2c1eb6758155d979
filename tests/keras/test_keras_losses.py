"""The Keras 3 losses on the backend KERAS_BACKEND names (PyTorch in `make test`; TensorFlow
and JAX in `make test-keras`, without PyTorch installed) against the NumPy reference, and on
PyTorch against tripletlab.losses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tripletlab.keras import (  # noqa: E402
    TripletHardLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_semihard_loss,
)

from ..losses import reference  # noqa: E402

DISTANCES = ("L2", "squared-L2", "angular")
BACKEND = keras.backend.backend()


def gradient(loss_fn, labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d loss_fn(labels, x) / d x on the running backend, as a NumPy array."""
    if BACKEND == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        loss_fn(torch.tensor(labels), tensor).backward()
        return tensor.grad.numpy()
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensor = tf.Variable(x)
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.constant(labels), tensor)
        return tape.gradient(loss, tensor).numpy()
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: loss_fn(labels, v))(x))
    pytest.skip(f"no gradients on the {BACKEND} backend")


LAYOUTS = [[0, 0, 1, 1, 1, 2, 2, 3, 0, 2, 1, 3], [0, 1, 2, 3, 4], [7] * 6, [0, 0, 1, 2, 2, 3]]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("labels", LAYOUTS)
def test_values_equal_the_numpy_reference(distance, labels):
    y = np.array(labels)
    x = np.random.default_rng(len(labels)).normal(size=(len(y), 6)).astype(np.float32)
    semihard = float(triplet_semihard_loss(y, x, 0.7, distance))
    assert semihard == pytest.approx(reference.semihard(x, y, 0.7, distance), abs=1e-5)
    for soft in (False, True):
        hard = float(triplet_hard_loss(y[:, None], x, 0.7, soft, distance))  # (N, 1) labels
        assert hard == pytest.approx(reference.hard(x, y, 0.7, distance, soft), abs=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_loss_classes_keep_large_labels_apart(dtype):
    """Keras casts y_true to the loss dtype: 2**24 and 2**24 + 1 became one class in float32
    (2049 and 2050 in float16), unlike TF Addons, which compared the integers."""
    y = np.array([2**24, 2**24 + 1, 5, 5, 2**24, 2049, 2050, 2049], dtype=np.int64)
    x = np.random.default_rng(3).normal(size=(len(y), 4)).astype(np.float32)
    semihard = float(TripletSemiHardLoss(margin=0.7, dtype=dtype)(y, x))
    assert semihard == pytest.approx(reference.semihard(x, y, 0.7, "L2"), rel=2e-3)
    hard = float(TripletHardLoss(margin=0.7, dtype=dtype)(y[:, None], x))
    assert hard == pytest.approx(reference.hard(x, y, 0.7, "L2", False), rel=2e-3)


@pytest.mark.parametrize("distance", DISTANCES)
def test_values_equal_the_pytorch_losses(distance):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed beside this backend")
    from tripletlab import losses as torch_losses

    y = np.array(LAYOUTS[0])
    x = np.random.default_rng(5).normal(size=(len(y), 6)).astype(np.float32)
    as_torch = torch_losses.triplet_semihard_loss(
        torch.tensor(x), torch.tensor(y), margin=0.7, distance=distance
    )
    assert float(triplet_semihard_loss(y, x, 0.7, distance)) == pytest.approx(
        float(as_torch), abs=1e-5
    )


def test_blocks_of_anchors_give_the_same_loss(monkeypatch):
    import tripletlab.keras.losses as module

    y = np.random.default_rng(0).integers(0, 5, 40)
    x = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    whole = float(triplet_semihard_loss(y, x))
    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 40 * 40 * 3)  # 14 blocks of 3 anchors
    assert float(triplet_semihard_loss(y, x)) == pytest.approx(whole, abs=1e-6)


def test_gradients_finite_and_no_nan_without_positive_pairs():
    rng = np.random.default_rng(4)
    alone = gradient(TripletSemiHardLoss(), np.arange(8), rng.normal(size=(8, 4)).astype("f"))
    assert np.isfinite(alone).all()
    assert float(TripletSemiHardLoss()(np.arange(8), rng.normal(size=(8, 4)).astype("f"))) == 0.0
    x = rng.normal(size=(10, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 3])
    for loss_fn in (TripletSemiHardLoss(), TripletHardLoss(soft=True)):
        grad = gradient(loss_fn, labels, x)
        assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_gradient_equals_a_finite_difference():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 3)).astype(np.float64)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    analytic = gradient(lambda y, v: triplet_hard_loss(y, v, soft=True), labels, x)
    step, numeric = 1e-6, np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (reference.hard(up, labels, 1.0, "L2", True)
                          - reference.hard(down, labels, 1.0, "L2", True)) / (2 * step)  # fmt: skip
    np.testing.assert_allclose(analytic, numeric, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_half_precision_is_computed_in_float32_and_cast_back(scale):
    """At scale 300 squared distances pass float16's largest number (65,504): computed in
    float16 (PyTorch's dtypes were not recognized as half) the loss was NaN."""
    y = np.array([0, 0, 1, 1, 2, 2])
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32) * scale
    for dtype in ("float16", "bfloat16"):
        low = keras.ops.cast(x, dtype)
        exact = keras.ops.convert_to_numpy(keras.ops.cast(low, "float32"))
        expected = (reference.semihard(exact, y, 1.0, "L2"),
                    reference.hard(exact, y, 1.0, "L2", False))  # fmt: skip
        for loss_fn, value in zip(
            (triplet_semihard_loss, triplet_hard_loss), expected, strict=True
        ):
            loss = loss_fn(y, low)
            assert keras.backend.standardize_dtype(loss.dtype) == dtype
            assert float(loss) == pytest.approx(value, rel=1e-2, abs=1e-3)


def test_callable_distance_metric():
    y = np.array([0, 0, 1, 1, 1, 2])
    x = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)

    def manhattan(e):
        diff = keras.ops.expand_dims(e, 1) - keras.ops.expand_dims(e, 0)
        return keras.ops.sum(keras.ops.abs(diff), axis=2)

    d = np.abs(x[:, None] - x[None]).sum(2)
    expected = []
    for a in range(6):
        positives = [d[a, p] for p in range(6) if p != a and y[p] == y[a]]
        negatives = [d[a, n] for n in range(6) if y[n] != y[a]]
        hardest_pos = max(positives) if positives else d[a].min()
        expected.append(max(hardest_pos - min(negatives) + 1.0, 0.0))
    got = float(triplet_hard_loss(y, x, distance_metric=manhattan))
    assert got == pytest.approx(np.mean(expected), abs=1e-5)
    with pytest.raises(ValueError, match="L2, squared-L2, angular"):
        triplet_semihard_loss(y, x, distance_metric="cosine")


def test_compiled_model_saves_and_loads_with_the_loss(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=TripletSemiHardLoss(margin=0.5, distance_metric="angular"))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, TripletSemiHardLoss)
    assert (loaded.loss.margin, loaded.loss.distance_metric) == (0.5, "angular")
    hard = TripletHardLoss.from_config(TripletHardLoss(soft=True, name="h").get_config())
    assert hard.soft and hard.name == "h"


def test_importing_tripletlab_does_not_import_keras():
    code = "import sys, tripletlab, tripletlab.utils.io; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tripletlab_keras_imports_no_pytorch_on_other_backends():
    if BACKEND == "torch":
        pytest.skip("the PyTorch backend imports PyTorch itself")
    code = "import sys, tripletlab.keras; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "KERAS_BACKEND": BACKEND})  # fmt: skip


def test_missing_backend_is_explained():
    code = "import tripletlab.keras"
    env = {"KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        assert done.returncode != 0 and "KERAS_BACKEND=torch" in done.stderr


def test_the_docs_keras_examples_compile_and_train():
    # docs/keras.md's first example (any backend) and the README's two lines, which compile
    # the model that example makes; the tutorial's own code is test_tutorial.py's.
    root = Path(__file__).resolve().parents[2]
    docs = re.findall(r"```python\n(.*?)```", (root / "docs" / "keras.md").read_text(), re.S)
    readme = [b for b in re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), re.S)
              if "tripletlab.keras" in b]  # fmt: skip
    scope: dict = {}
    exec(compile(docs[0], "docs/keras.md, example 1", "exec"), scope)
    first = scope["model"].loss
    exec(compile(readme[0], "README.md, the Keras example", "exec"), scope)
    assert scope["model"].loss is not first  # the README's lines compiled the model again
    rng = np.random.default_rng(0)
    images = rng.random((64, 28, 28, 1), dtype=np.float32)
    labels = np.arange(64) % 4
    history = scope["model"].fit(images, labels, batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert scope["model"].loss.__class__ is TripletSemiHardLoss
