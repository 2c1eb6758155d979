"""Fused first layer of `seed_cnn` on one-channel images: 2x2 convolution with TF's "same"
padding (one zero row and column after the image), then 2x2 max pooling.

The layer's output is large (64 channels at full resolution: 6.4 MB for 32 MNIST images) and
its work small (16 multiply-adds per pooled value). Run as separate PyTorch operations, that
output is written, read by the pooling, and in backward a zero-filled gradient of the same
size is scattered and read again by the convolution's backward: about a quarter of a batch-32
training step. Here each pooled value is computed from its 3 x 3 input patch without storing
the convolution, and backward reads only the pooled gradient, which of the four positions
won, and the input. Ties and NaN pick the position PyTorch's max pooling picks (the first
largest in row-major order; a NaN wins). The input gets no gradient: it is the image.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor
from torch.autograd.function import once_differentiable


def conv_pool_applies(images: Tensor, weight: Tensor) -> bool:
    """Whether `conv_pool` can stand in for pad, conv (`weight`) and pool on `images` (N, C, H, W).

    It can for float32 CPU images of one channel that need no gradient, outside tracing,
    compiling and ONNX export (which need PyTorch's own operations).
    """
    return (
        images.device.type == "cpu"
        and images.dtype == torch.float32
        and weight.dtype == torch.float32
        and images.ndim == 4
        and images.shape[1] == 1
        and min(images.shape[2:]) >= 2
        and not images.requires_grad
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


def conv_pool(images: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """max_pool2d(conv2d(pad(images, (0, 1, 0, 1)), weight, bias), 2), computed in one pass.

    Args:
        images: (N, 1, H, W) float32 on the CPU.
        weight: (C, 1, 2, 2) float32.
        bias: (C,) float32.
    Returns:
        (N, C, H // 2, W // 2), stored channels-last (as PyTorch's own layers store it here).
    """
    return _ConvPool.apply(images, weight, bias)


class _ConvPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        pixels = images.detach().reshape(images.shape[0], *images.shape[2:]).contiguous()
        taps = weight.detach().reshape(weight.shape[0], 4).t().contiguous()  # (4, C)
        size = (images.shape[0], weight.shape[0], images.shape[2] // 2, images.shape[3] // 2)
        out = torch.empty(size, memory_format=torch.channels_last)
        winner = torch.empty(size, dtype=torch.uint8, memory_format=torch.channels_last)
        _forward(pixels.numpy(), taps.numpy(), bias.detach().contiguous().numpy(),
                 out.permute(0, 2, 3, 1).numpy(), winner.permute(0, 2, 3, 1).numpy())  # fmt: skip
        ctx.save_for_backward(pixels, winner)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, Tensor]:
        pixels, winner = ctx.saved_tensors
        grad = grad.permute(0, 2, 3, 1).contiguous()  # a view when it is channels-last already
        grad_taps = np.zeros((5, winner.shape[1]), dtype=np.float64)  # 4 taps and the bias
        _backward(pixels.numpy(), grad.numpy(), winner.permute(0, 2, 3, 1).numpy(), grad_taps)
        grad_taps = torch.from_numpy(grad_taps).float()
        return None, grad_taps[:4].t().reshape(-1, 1, 2, 2).contiguous(), grad_taps[4].clone()


@njit(cache=True, nogil=True)
def _patch(pixels: np.ndarray, n: int, i: int, j: int) -> tuple:
    """The nine input values under pooled value (i, j) of image n, zero in the padding."""
    height, width = pixels.shape[1], pixels.shape[2]
    row, col = 2 * i, 2 * j
    last_col = col + 2 < width
    last_row = row + 2 < height
    zero = np.float32(0.0)
    return (
        pixels[n, row, col], pixels[n, row, col + 1],
        pixels[n, row, col + 2] if last_col else zero,
        pixels[n, row + 1, col], pixels[n, row + 1, col + 1],
        pixels[n, row + 1, col + 2] if last_col else zero,
        pixels[n, row + 2, col] if last_row else zero,
        pixels[n, row + 2, col + 1] if last_row else zero,
        pixels[n, row + 2, col + 2] if last_row and last_col else zero,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _forward(
    pixels: np.ndarray, taps: np.ndarray, bias: np.ndarray, out: np.ndarray, winner: np.ndarray
) -> None:
    """Pooled convolution of pixels (N, H, W) with taps (4, C) (row-major 2x2) and bias (C,)
    into out (N, H // 2, W // 2, C); winner gets 2 a + b of the winning position (2i+a, 2j+b).
    """
    w00, w01, w10, w11 = taps[0], taps[1], taps[2], taps[3]
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                p00, p01, p02, p10, p11, p12, p20, p21, p22 = _patch(pixels, n, i, j)
                best, won = out[n, i, j], winner[n, i, j]
                for c in range(bias.size):  # vectorised over channels
                    v0 = bias[c] + p00 * w00[c] + p01 * w01[c] + p10 * w10[c] + p11 * w11[c]
                    v1 = bias[c] + p01 * w00[c] + p02 * w01[c] + p11 * w10[c] + p12 * w11[c]
                    v2 = bias[c] + p10 * w00[c] + p11 * w01[c] + p20 * w10[c] + p21 * w11[c]
                    v3 = bias[c] + p11 * w00[c] + p12 * w01[c] + p21 * w10[c] + p22 * w11[c]
                    top, which = v0, np.uint8(0)
                    take = (v1 > top) | (v1 != v1)
                    top, which = (v1, np.uint8(1)) if take else (top, which)
                    take = (v2 > top) | (v2 != v2)
                    top, which = (v2, np.uint8(2)) if take else (top, which)
                    take = (v3 > top) | (v3 != v3)
                    top, which = (v3, np.uint8(3)) if take else (top, which)
                    best[c] = top
                    won[c] = which


@njit(cache=True, nogil=True)
def _backward(pixels: np.ndarray, grad: np.ndarray, winner: np.ndarray, out: np.ndarray) -> None:
    """Add the gradients of the four taps and the bias, out (5, C) float64, given the pooled
    gradient grad (N, H // 2, W // 2, C) and the winners of `_forward`. Sums run in float32
    per image and in float64 across images.
    """
    part = np.empty(out.shape, dtype=np.float32)
    g00, g01, g10, g11, g_bias = part[0], part[1], part[2], part[3], part[4]
    for n in range(grad.shape[0]):
        part[:] = 0.0
        for i in range(grad.shape[1]):
            for j in range(grad.shape[2]):
                p00, p01, p02, p10, p11, p12, p20, p21, p22 = _patch(pixels, n, i, j)
                g, won = grad[n, i, j], winner[n, i, j]
                for c in range(g.size):  # vectorised over channels: selects, no gathers
                    q = won[c]
                    x00 = p00 if q == 0 else (p01 if q == 1 else (p10 if q == 2 else p11))
                    x01 = p01 if q == 0 else (p02 if q == 1 else (p11 if q == 2 else p12))
                    x10 = p10 if q == 0 else (p11 if q == 1 else (p20 if q == 2 else p21))
                    x11 = p11 if q == 0 else (p12 if q == 1 else (p21 if q == 2 else p22))
                    g00[c] += g[c] * x00
                    g01[c] += g[c] * x01
                    g10[c] += g[c] * x10
                    g11[c] += g[c] * x11
                    g_bias[c] += g[c]
        out += part
