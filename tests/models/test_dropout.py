from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tripletlab.models._dropout import dropout_threshold, fast_dropout
from tripletlab.models.fast_dropout import FastDropout


def lowbias32(z: np.ndarray) -> np.ndarray:
    """Reference 32-bit hash in NumPy's wrapping uint32 arithmetic."""
    z = z.astype(np.uint32)
    z ^= z >> np.uint32(16)
    z *= np.uint32(0x7FEB352D)
    z ^= z >> np.uint32(15)
    z *= np.uint32(0x846CA68B)
    return z ^ (z >> np.uint32(16))


def reference_keep(count: int, seed: int, p: float) -> np.ndarray:
    """The documented mask, brute force: entry m = hash(hash(m + a) ^ b) holds the 16-bit
    uniforms of elements 2m (low half) and 2m + 1 (high half), in memory order."""
    key_a, key_b = np.uint32(seed % 2**32), np.uint32(seed // 2**32 % 2**32)
    with np.errstate(over="ignore"):
        words = lowbias32(lowbias32(np.arange((count + 1) // 2, dtype=np.uint32) + key_a) ^ key_b)
    uniforms = np.stack([words & 0xFFFF, words >> 16], axis=1).reshape(-1)[:count]
    return uniforms >= dropout_threshold(p)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_mask_values_and_gradient_match_the_numpy_reference(relu, channels_last):
    torch.manual_seed(3)
    x = torch.randn(5, 3, 7, 9)  # 945 elements: odd, not a multiple of 4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    generator_state = torch.get_rng_state()
    out = fast_dropout(x, 0.3, relu=relu)
    torch.set_rng_state(generator_state)  # fast_dropout's seed: one int64 draw
    seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    memory = x.detach().permute(0, 2, 3, 1) if channels_last else x.detach()
    keep = reference_keep(x.numel(), seed, 0.3).reshape(memory.shape)
    if relu:
        keep &= memory.numpy() > 0
    expected = np.where(keep, memory.numpy() * np.float32(1 / 0.7), 0)
    got = out.detach().permute(0, 2, 3, 1) if channels_last else out.detach()
    np.testing.assert_array_equal(got.numpy(), expected)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    grad = torch.randn_like(x)
    out.backward(grad)
    grad_memory = grad.permute(0, 2, 3, 1) if channels_last else grad
    x_grad = x.grad.permute(0, 2, 3, 1) if channels_last else x.grad
    expected_grad = np.where(keep, grad_memory.numpy() * np.float32(1 / 0.7), 0)
    np.testing.assert_array_equal(x_grad.numpy(), expected_grad)


def test_masks_follow_torch_manual_seed_and_differ_between_calls():
    x = torch.ones(1000)
    torch.manual_seed(7)
    first, second = fast_dropout(x, 0.5), fast_dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(fast_dropout(x, 0.5), first)
    assert not torch.equal(first, second)


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


def test_neighbouring_elements_are_dropped_independently():
    torch.manual_seed(1)
    kept = (fast_dropout(torch.ones(400_000), 0.3) != 0).numpy()
    for lag in (1, 2, 3, 4):  # 16-bit halves of one hash, neighbouring hashes
        both = np.mean(kept[:-lag] & kept[lag:])
        assert both == pytest.approx(0.7 * 0.7, abs=0.004)


def test_after_relu_equals_relu_then_dropout():
    layer = FastDropout(0.3).train()
    x = torch.randn(4, 8, 5, 5)
    torch.manual_seed(2)
    fused = layer.after_relu(x)
    torch.manual_seed(2)
    assert torch.equal(fused, layer(torch.relu(x)))
    layer.eval()
    assert torch.equal(layer.after_relu(x), torch.relu(x))


def test_identity_in_eval_mode_odd_sizes_and_other_dtypes():
    x = torch.randn(3, 5, 7)
    assert torch.equal(FastDropout(0.3).eval()(x), x)
    assert FastDropout(0.3).train()(x).shape == x.shape  # 105 elements: not a multiple of 4
    wide = FastDropout(0.3).train()(x.double())  # not float32: PyTorch's generator path
    assert wide.dtype == torch.float64
    assert ((wide == 0) | torch.isclose(wide, x.double() / 0.7)).all()
    with pytest.raises(ValueError, match="0, 1"):
        FastDropout(1.0)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_rows_of_a_batch_get_the_masks_they_have_in_the_whole_batch(channels_last, relu):
    """What a rank of a distributed run relies on: the parts of a batch (odd-sized rows
    included, and an empty part: a rank with no row of a short last batch), dropped inside
    `rows_before`, are the whole batch dropped."""
    from tripletlab.models.batch_part import batch_part

    layer = FastDropout(0.4).train()
    x = torch.randn(7, 3, 5, 3)  # 45 elements a row: odd offsets too
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    drop = layer.after_relu if relu else layer
    state = torch.get_rng_state()
    whole = drop(x)
    parts = []
    for start, stop in ((0, 2), (2, 3), (3, 3), (3, 7)):
        torch.set_rng_state(state)  # every rank draws the same seed
        with batch_part(start, 7):
            parts.append(drop(x[start:stop]))
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)
    torch.set_rng_state(state)
    assert not torch.equal(drop(x[3:7]), whole[3:7])  # without it: the masks of rows 0..3


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_runs_the_dropout_eagerly_with_its_masks(backend, request):
    # The tutorial network layer by layer under torch.compile: AOTAutograd used to trace into
    # the NumPy views of the dropout's pass and failed at run time (setStorage out of bounds);
    # inductor, tracing it, drew other masks than eager mode.
    if backend == "inductor" and not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("inductor's CPU backend compiles C++")
    from tripletlab.models.seed_cnn import SeedCNNBackbone

    request.addfinalizer(torch._dynamo.reset)
    torch.manual_seed(0)
    model = SeedCNNBackbone(fused=False).train()
    x = torch.randn(32, 1, 28, 28, requires_grad=True)
    compiled = torch.compile(model, backend=backend)
    outputs, grads = [], []
    for run in (model, compiled):
        torch.manual_seed(1)
        out = run(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append(x.grad)
        x.grad = None
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(grads[1], grads[0])
