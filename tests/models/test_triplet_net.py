from __future__ import annotations

import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.data import load_mnist
from tripletlab.models import TripletNet


@pytest.fixture(scope="module")
def digits():
    return torch.from_numpy(load_mnist("test").images[:24])


def test_one_set_of_weights_with_gradients_from_all_three_branches(digits):
    torch.manual_seed(0)
    net = TripletNet(Embedder(ModelConfig(embedding_dim=16))).eval()  # no dropout noise
    assert len(list(net.parameters())) == len(list(net.embedder.parameters()))
    anchor, positive, negative = digits[:8], digits[8:16], digits[16:24]
    out = net(anchor, positive, negative)
    assert out.shape == (8, 48)
    grads = []
    for branch in range(3):  # the loss of one slice alone reaches the shared weights
        net.zero_grad()
        out = net(anchor, positive, negative)
        out[:, 16 * branch : 16 * (branch + 1)].sum().backward()
        grads.append(net.embedder.head.weight.grad.clone())
        assert grads[-1].abs().sum() > 0
    net.zero_grad()
    net(anchor, positive, negative).sum().backward()
    torch.testing.assert_close(net.embedder.head.weight.grad, sum(grads), rtol=1e-4, atol=1e-5)


def test_slices_are_the_embedder_outputs(digits):
    net = TripletNet(Embedder(ModelConfig(embedding_dim=8))).eval()
    out = net(digits[:4], digits[4:8], digits[8:12])
    torch.testing.assert_close(out[:, 8:16], net.embedder(digits[4:8]))


def test_spike_cnn_raw_relu_output_is_the_embedding():
    embedder = Embedder(ModelConfig(backbone="spike_cnn", head=False, normalize=False))
    vectors = embedder.embed(load_mnist("test").images[:16])
    assert vectors.shape == (16, 128) and (vectors >= 0).all()
    # Keras' summary of the project's shared network: 320 + 9,248 + 102,528 parameters.
    assert sum(p.numel() for p in embedder.parameters()) == 112_096
