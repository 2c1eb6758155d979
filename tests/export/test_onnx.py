"""PyTorch -> ONNX -> ONNX Runtime gives the same embeddings, on real MNIST images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.data import load_mnist
from tripletlab.export.onnx import OnnxEmbedder, export_onnx


@pytest.fixture(scope="module")
def digits():
    return load_mnist("test").images[:300]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [ModelConfig(), ModelConfig(backbone="spike_cnn", head=False, normalize=False),
     ModelConfig(backbone="resnet_small", embedding_dim=32, rotation=10.0),
     ModelConfig(tta_shift=1), ModelConfig(tta_shift=1, tta_flip=True, flip=True)],
    ids=["seed_cnn", "spike_cnn-raw", "resnet_small-augment", "seed_cnn-test-time-views",
         "seed_cnn-mirror-views"],
)  # fmt: skip
def test_onnx_parity_with_any_batch_size(config, digits, tmp_path):
    torch.manual_seed(0)
    embedder = Embedder(config)
    if config.backbone == "resnet_small":  # non-trivial BatchNorm statistics
        embedder.train()
        with torch.no_grad():
            embedder(torch.from_numpy(digits))
    path = export_onnx(embedder, tmp_path / "model.onnx")
    runtime = OnnxEmbedder(path)
    expected = embedder.embed(digits)
    for batch_size in (1, 7, 300):
        np.testing.assert_allclose(
            runtime.embed(digits, batch_size=batch_size), expected, atol=1e-5
        )


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tripletlab export onnx"):
        OnnxEmbedder(tmp_path / "model.onnx")


@pytest.mark.slow
def test_export_prints_nothing_of_the_exporters_own(tmp_path):
    """torch's exporter logs the torchvision operators it skips and warns about a deprecated
    class of its own, once per process: a fresh one shows whether a user sees either."""
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from tripletlab import Embedder\n"
            "from tripletlab.export.onnx import export_onnx\n"
            f"export_onnx(Embedder().eval(), {str(tmp_path / 'm.onnx')!r})\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.onnx").is_file()
    assert "torchvision" not in done.stderr and "LeafSpec" not in done.stderr, done.stderr
