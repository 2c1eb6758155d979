"""The Keras 3 losses on the PyTorch backend against the NumPy reference and tripletlab.losses."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")

from tripletlab import losses as torch_losses  # noqa: E402
from tripletlab.keras import (  # noqa: E402
    TripletHardLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_semihard_loss,
)
from tripletlab.losses import DISTANCES  # noqa: E402

from ..losses import reference  # noqa: E402

LAYOUTS = [[0, 0, 1, 1, 1, 2, 2, 3, 0, 2, 1, 3], [0, 1, 2, 3, 4], [7] * 6, [0, 0, 1, 2, 2, 3]]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("labels", LAYOUTS)
def test_values_equal_numpy_reference_and_torch_losses(distance, labels):
    y = np.array(labels)
    x = np.random.default_rng(len(labels)).normal(size=(len(y), 6)).astype(np.float32)
    semihard = float(triplet_semihard_loss(y, x, 0.7, distance))
    assert semihard == pytest.approx(reference.semihard(x, y, 0.7, distance), abs=1e-5)
    as_torch = torch_losses.triplet_semihard_loss(
        torch.tensor(x), torch.tensor(y), margin=0.7, distance=distance
    )
    assert semihard == pytest.approx(float(as_torch), abs=1e-5)
    for soft in (False, True):
        hard = float(triplet_hard_loss(y[:, None], x, 0.7, soft, distance))  # (N, 1) labels
        assert hard == pytest.approx(reference.hard(x, y, 0.7, distance, soft), abs=1e-5)


def test_blocks_of_anchors_give_the_same_loss(monkeypatch):
    import tripletlab.keras.losses as module

    y = np.random.default_rng(0).integers(0, 5, 40)
    x = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    whole = float(triplet_semihard_loss(y, x))
    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 40 * 40 * 3)  # 14 blocks of 3 anchors
    assert float(triplet_semihard_loss(y, x)) == pytest.approx(whole, abs=1e-6)


def test_gradients_finite_and_no_nan_without_positive_pairs():
    x = torch.randn(8, 4, requires_grad=True)
    loss = TripletSemiHardLoss()(torch.arange(8), x)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(x.grad).all()
    x = torch.randn(10, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 3])
    for loss_fn in (TripletSemiHardLoss(), TripletHardLoss(soft=True)):
        x.grad = None
        loss_fn(labels, x).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_half_precision_is_computed_in_float32_and_cast_back():
    y = np.array([0, 0, 1, 1, 2, 2])
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    for dtype in ("float16", "bfloat16"):
        low = keras.ops.cast(x, dtype)
        loss = triplet_semihard_loss(y, low)
        assert str(loss.dtype).endswith(dtype)
        expected = reference.semihard(
            keras.ops.convert_to_numpy(keras.ops.cast(low, "float32")), y, 1.0, "L2"
        )
        assert float(loss) == pytest.approx(expected, rel=1e-2)


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
    code = "import sys, tripletlab, tripletlab.losses; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_backend_is_explained():
    code = "import tripletlab.keras"
    env = {"KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        assert done.returncode != 0 and "KERAS_BACKEND=torch" in done.stderr
