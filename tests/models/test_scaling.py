"""Input scaling inside the model: [0, 1], [-1, 1] and mean / std, saved with the run and
inside the ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from tripletlab.models.scaling import InputScaling, resolve_scaling


@pytest.mark.parametrize(
    ("settings", "zero", "full"),
    [
        ({}, [0.0], [1.0]),
        ({"input_scaling": "symmetric"}, [-1.0], [1.0]),  # Rescaling(1/127.5, offset=-1)
        ({"input_scaling": "mean-std", "input_mean": [0.25], "input_std": [0.5]}, [-0.5], [1.5]),
        (
            {"input_scaling": "mean-std", "channels": 3},
            [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
            [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
        ),
    ],
)
def test_black_and_white_pixels_scale_as_the_mode_says(settings, zero, full):
    scaling = InputScaling(ModelConfig(**settings))
    channels = len(zero)
    images = torch.stack([torch.zeros(channels, 2, 2), torch.ones(channels, 2, 2)])
    out = scaling(images)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(zero), atol=1e-6)
    assert torch.allclose(out[1, :, 0, 0], torch.tensor(full), atol=1e-6)


def test_auto_is_imagenet_for_imagenet_backbones_and_unit_otherwise():
    assert resolve_scaling(ModelConfig())[0] == "unit"
    assert resolve_scaling(ModelConfig(backbone="resnet50", channels=3))[0] == "mean-std"
    with pytest.raises(ValueError, match=r"needs model\.input_mean and model\.input_std"):
        resolve_scaling(ModelConfig(input_scaling="mean-std", channels=2))


def test_runs_saved_before_input_scaling_keep_unit_scaling():
    from tripletlab.config import RunConfig, upgrade_saved

    old = {"model": {"backbone": "torchvision:resnet18", "channels": 3}}  # no input_scaling
    config = RunConfig.from_dict(upgrade_saved(old)).model
    assert config.input_scaling == "unit" and resolve_scaling(config)[0] == "unit"
    assert resolve_scaling(RunConfig.from_dict(old).model)[0] == "mean-std"  # a new run


def test_unit_scaling_changes_nothing_and_is_not_in_the_state_dict():
    model = Embedder(ModelConfig(backbone="spike_cnn", embedding_dim=8))
    assert not any(key.startswith("scaling.") for key in model.state_dict())
    images = torch.rand(3, 1, 28, 28)
    assert model.scaling(images) is images


@pytest.mark.parametrize("mode", ["unit", "symmetric", "mean-std"])
def test_scaling_is_inside_the_onnx_export(tmp_path, mode):
    pytest.importorskip("onnxruntime")
    from tripletlab.export.onnx import export_onnx
    from tripletlab.models.engines import OnnxEmbedder

    torch.manual_seed(0)
    config = ModelConfig(backbone="resnet_small", channels=3, image_size=(32, 32),
                         embedding_dim=8, input_scaling=mode)  # fmt: skip
    model = Embedder(config).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    exported = OnnxEmbedder(path).embed(images)
    assert np.abs(exported - model.embed(images)).max() < 1e-5
    # The scaling matters: the same weights without it give other embeddings.
    if mode != "unit":
        other = Embedder(ModelConfig(**{**config.__dict__, "input_scaling": "unit"}))
        other.load_state_dict(model.state_dict())
        assert np.abs(other.embed(images) - exported).max() > 1e-3


def test_a_classifier_with_test_time_views_exports_its_probabilities(tmp_path):
    pytest.importorskip("onnxruntime")
    from tripletlab.export.onnx import export_onnx
    from tripletlab.models.engines import OnnxEmbedder

    torch.manual_seed(1)
    config = ModelConfig(backbone="spike_cnn", embedding_dim=8, tta_shift=1, classes=(2, 4, 6),
                         class_names=("two", "four", "six"), input_scaling="symmetric")  # fmt: skip
    model = Embedder(config).eval()
    exported = OnnxEmbedder(export_onnx(model, tmp_path / "model.onnx"))
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    embeddings, probabilities = model.embed_and_classify(images)
    assert exported.has_classifier and probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    assert np.abs(exported.classify(images) - probabilities).max() < 1e-5
    assert np.abs(exported.embed(images) - embeddings).max() < 1e-5
