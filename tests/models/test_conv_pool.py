from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional

from tripletlab import Embedder
from tripletlab.data import load_mnist
from tripletlab.models import build_backbone, layer_by_layer
from tripletlab.models._conv_pool import conv_pool, conv_pool_applies
from tripletlab.models.weights import load_backbone_weights
from tripletlab.runs import write_checkpoint


def separate(images, weight, bias):
    """PyTorch's own operations: pad one row and column after the image, conv, max pool."""
    return functional.max_pool2d(functional.conv2d(functional.pad(images, (0, 1, 0, 1)),
                                                   weight, bias), 2)  # fmt: skip


def brute_force(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(N, H, W), (C, 2, 2), (C,) -> (N, C, H // 2, W // 2) in float64 loops."""
    n, height, width = images.shape
    padded = np.zeros((n, height + 1, width + 1))
    padded[:, :height, :width] = images
    conv = np.zeros((n, len(bias), height, width))
    for r in range(height):
        for s in range(width):
            window = padded[:, r : r + 2, s : s + 2].reshape(n, 4)
            conv[:, :, r, s] = window @ weight.reshape(-1, 4).T + bias
    rows, cols = height // 2, width // 2
    return conv[:, :, : 2 * rows, : 2 * cols].reshape(n, -1, rows, 2, cols, 2).max(axis=(3, 5))


@pytest.mark.parametrize("size", [(28, 28), (7, 5), (2, 3), (6, 2)])
def test_values_and_gradients_equal_the_separate_operations(size):
    torch.manual_seed(0)
    images = torch.randn(3, 1, *size)
    weight = torch.randn(16, 1, 2, 2, requires_grad=True)
    bias = torch.randn(16, requires_grad=True)
    ours = conv_pool(images, weight, bias)
    expected = brute_force(images[:, 0].double().numpy(), weight.detach()[:, 0].double().numpy(),
                           bias.detach().double().numpy())  # fmt: skip
    np.testing.assert_allclose(ours.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    reference = separate(images, weight, bias)
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(reference)
    ours_grads = torch.autograd.grad(ours, (weight, bias), grad)
    reference_grads = torch.autograd.grad(reference, (weight, bias), grad)
    for got, want in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_ties_route_the_gradient_where_pytorch_does_and_nan_wins():
    # The tile [[1, 2], [2, 0]] repeated under equal taps: every 2x2 window sums to 5, so the
    # four positions of each pooling window tie, while the pixels under each tap differ.
    tile = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    images = tile.repeat(3, 3).expand(2, 1, 6, 6).clone()
    images[1, 0, 2:4, 2:4] = 5.0  # one window without ties
    weight = torch.ones(4, 1, 2, 2, requires_grad=True)
    bias = torch.zeros(4, requires_grad=True)
    ours, reference = conv_pool(images, weight, bias), separate(images, weight, bias)
    torch.testing.assert_close(ours, reference)
    grad = torch.rand_like(reference)
    torch.testing.assert_close(torch.autograd.grad(ours, weight, grad)[0],
                               torch.autograd.grad(reference, weight, grad)[0])  # fmt: skip
    images[0, 0, 3, 2] = float("nan")  # images enter as uint8; NaN only from direct calls
    torch.testing.assert_close(conv_pool(images, weight, bias), separate(images, weight, bias),
                               equal_nan=True)  # fmt: skip


def test_applies_only_where_the_fused_pass_computes_the_same():
    weight = build_backbone("seed_cnn").conv1.weight
    images = torch.rand(2, 1, 28, 28)
    assert conv_pool_applies(images, weight)
    assert not conv_pool_applies(images.requires_grad_(), weight)  # input gradients wanted
    assert not conv_pool_applies(torch.rand(2, 3, 28, 28), weight)  # colour images
    assert not conv_pool_applies(torch.rand(2, 1, 28, 28).double(), weight)


def test_the_fused_option_chooses_the_path():
    """`fused` (default True) runs conv1 inside the compiled pass, so its own forward (and a
    hook on it) never runs; `fused=False` and `layer_by_layer` run every layer."""
    backbone = build_backbone("seed_cnn").eval()
    calls = []
    backbone.conv1.register_forward_hook(lambda *args: calls.append(1))
    images = torch.rand(2, 1, 28, 28)
    fused = backbone(images)
    assert backbone.fused and calls == []
    with layer_by_layer(backbone):
        layered = backbone(images)
    assert backbone.fused and calls == [1]  # switched back after the block
    backbone.fused = False
    torch.testing.assert_close(backbone(images), fused)
    torch.testing.assert_close(layered, fused)
    assert calls == [1, 1]


def test_seed_cnn_training_step_equals_the_layer_by_layer_path():
    """The fused backbone (conv-pool pass, ReLU and dropout fused) against the same model run
    layer by layer: same dropout masks, same values, gradients."""
    torch.manual_seed(0)
    embedder = Embedder().train()
    images = torch.from_numpy(load_mnist("test").images[:64])
    grad = torch.randn(64, embedder.config.embedding_dim)

    def run(fused: bool):
        embedder.backbone.fused = fused
        torch.manual_seed(1)
        out = embedder(images)
        grads = torch.autograd.grad(out, list(embedder.parameters()), grad)
        return out, grads

    fused, fused_grads = run(fused=True)
    layered, layered_grads = run(fused=False)
    torch.testing.assert_close(fused, layered)
    for got, want in zip(fused_grads, layered_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    embedder.backbone.fused = True
    torch.manual_seed(2)  # other masks: other outputs (dropout is on)
    assert not torch.allclose(embedder(images), fused)


def _old_keys(state: dict) -> dict:
    """The key names checkpoints had before seed_cnn's layers were named (`backbone.1.weight`)."""
    return {k.replace("backbone.conv1.", "backbone.1.").replace("backbone.conv2.", "backbone.6."): v
            for k, v in state.items()}  # fmt: skip


def test_checkpoints_with_position_indexed_layers_still_load(tmp_path):
    """A checkpoint written before the layers had names loads from disk (`from_pretrained`) and
    as transfer weights (`--backbone-weights`, run folder or .safetensors file) unchanged."""
    torch.manual_seed(0)
    embedder = Embedder()
    old = _old_keys(embedder.state_dict())
    assert "backbone.1.weight" in old and "backbone.conv1.weight" not in old
    folder = tmp_path / "old-checkpoint"
    write_checkpoint(folder, old, {"model": dataclasses.asdict(embedder.config)})
    images = load_mnist("test").images[:16]
    np.testing.assert_array_equal(Embedder.from_pretrained(folder).embed(images),
                                  embedder.embed(images))  # fmt: skip
    backbone_file = tmp_path / "backbone.safetensors"
    save_file({k[len("backbone.") :]: v for k, v in old.items() if k.startswith("backbone.")},
              backbone_file)  # fmt: skip
    for source in (folder, backbone_file):
        torch.manual_seed(1)
        fresh = build_backbone("seed_cnn")
        report = load_backbone_weights(fresh, source, strict=True)
        assert report == {"missing": [], "unexpected": [], "mismatched": []}
        for name, tensor in embedder.backbone.state_dict().items():
            assert torch.equal(fresh.state_dict()[name], tensor), (source, name)
