from __future__ import annotations

import pytest
import torch

from tripletlab.models.backbones import FastDropout


@pytest.mark.parametrize("p", [0.25, 0.3, 0.5])
def test_drop_rate_scaling_and_gradient(p):
    torch.manual_seed(0)
    layer = FastDropout(p).train()
    x = torch.ones(200, 50, 10, requires_grad=True)
    out = layer(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.005)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))  # the same mask backwards


def test_identity_in_eval_mode_and_odd_sizes():
    x = torch.randn(3, 5, 7)
    assert torch.equal(FastDropout(0.3).eval()(x), x)
    assert FastDropout(0.3).train()(x).shape == x.shape  # 105 elements: not a multiple of 4
    with pytest.raises(ValueError, match="0, 1"):
        FastDropout(1.0)
