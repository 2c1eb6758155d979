"""Dropout (optionally after a ReLU) in one pass, with a counter-based random mask.

PyTorch's CPU dropout draws one random number per element from a serial Mersenne twister and
then needs several passes (mask, multiply, scale; the same in backward). Here the 16-bit
uniform of element k of the tensor's memory is the low (k even) or high (k odd) half of
hash(hash(k // 2 + a) ^ b), with hash the 32-bit lowbias32 and (a, b) the halves of a 64-bit
seed; the element is kept when its uniform is at least round(p * 65536). The hashes are
computed in a vectorised loop, then one pass applies mask, ReLU and scale. The seed is one
draw from PyTorch's generator, so `torch.manual_seed` makes masks reproducible. The drop
probability is rounded to a multiple of 1/65536. Because the mask of an element depends only
on the seed and k, a part of a batch given the element offset of its first element (`offset`)
gets exactly the mask of those elements in the whole batch: how a rank of a distributed run
drops what one process on the global batch would drop.
Reference: C. Wellons, "Prospecting for hash functions" (2018),
https://nullprogram.com/blog/2018/07/31/ (lowbias32).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor
from torch.autograd.function import once_differentiable

from tripletlab.models.batch_part import draw_layout

_MIX1 = np.uint32(0x7FEB352D)
_MIX2 = np.uint32(0x846CA68B)


def dropout_threshold(p: float) -> int:
    """Elements whose 16-bit uniform is below this are dropped: round(p * 65536)."""
    return round(p * 65536)


@torch.compiler.disable
def fast_dropout(x: Tensor, p: float, *, relu: bool = False, offset: int = 0) -> Tensor:
    """Dropout with drop probability p (rounded to a multiple of 1/65536), after a ReLU if `relu`.

    Always eager: under `torch.compile` the graph breaks here (numba's pass cannot be traced,
    and AOTAutograd's tracing of the NumPy views inside failed at run time, torch 2.13).

    Args:
        x: float32 CPU tensor of any shape.
        offset: k of x's first element (in memory order): x is the part of a larger tensor
            that starts there (0: x is the whole tensor).
    Returns:
        Same shape and memory layout as x: relu(x) or x, zeroed where dropped, scaled by
        1 / (1 - p) elsewhere. Gradients are the same mask times the same scale.
    """
    seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    return _Dropout.apply(x, p, relu, seed, offset)


def _flat(x: Tensor) -> Tensor:
    """The elements of a dense tensor in memory order (N,) (a view)."""
    return x.as_strided((x.numel(),), (1,))


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float, relu: bool, seed: int, offset: int) -> Tensor:
        layout = draw_layout(x)
        x = x.contiguous(memory_format=layout)
        out = torch.empty_like(x)  # same strides as x
        keep = torch.empty(x.numel(), dtype=torch.bool)
        scale = 1.0 / (1.0 - p)
        odd = offset % 2  # the first element is the high half of its uint32
        uniforms = np.empty((odd + x.numel() + 1) // 2, dtype=np.uint32)
        _uniforms(np.uint32(seed % 2**32), np.uint32(seed // 2**32 % 2**32), offset // 2, uniforms)
        halves = uniforms.view(np.uint16)[odd : odd + x.numel()]
        _apply_mask(_flat(x.detach()).numpy(), halves, dropout_threshold(p),
                    scale, relu, _flat(out).numpy(), keep.numpy())  # fmt: skip
        ctx.save_for_backward(keep)
        ctx.scale = scale
        ctx.memory_format = layout
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        (keep,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=ctx.memory_format)
        grad_x = torch.empty_like(grad)
        _scale_kept(_flat(grad).numpy(), keep.numpy(), ctx.scale, _flat(grad_x).numpy())
        return grad_x, None, None, None, None


@njit(cache=True, nogil=True)
def _hash(z: np.uint32) -> np.uint32:
    """A bijective 32-bit integer hash (lowbias32). numba computes integers in 64 bits: each
    product is cut back to 32 (its low 32 bits are the 32-bit product's)."""
    z ^= z >> np.uint32(16)
    z = np.uint32(z * _MIX1)
    z ^= z >> np.uint32(15)
    z = np.uint32(z * _MIX2)
    return z ^ (z >> np.uint32(16))


@njit(cache=True, nogil=True)
def _uniforms(key_a: np.uint32, key_b: np.uint32, first: int, out: np.ndarray) -> None:
    """out[m] = hash(hash(first + m + key_a) ^ key_b), uint32: two 16-bit uniforms per entry."""
    for m in range(out.size):
        out[m] = _hash(_hash(np.uint32(np.uint32((first + m) % 4294967296) + key_a)) ^ key_b)


@njit(cache=True, nogil=True)
def _apply_mask(
    x: np.ndarray, uniforms: np.ndarray, threshold: int, scale: float, relu: bool,
    out: np.ndarray, keep: np.ndarray,
) -> None:  # fmt: skip
    """out[k] = x[k] * scale where uniforms[k] >= threshold (and x[k] > 0 if relu), else 0."""
    factor = np.float32(scale)
    limit = np.uint16(threshold)
    zero = np.float32(0.0)
    for k in range(x.size):
        kept = (uniforms[k] >= limit) & ((not relu) | (x[k] > zero))
        keep[k] = kept
        out[k] = x[k] * factor if kept else zero


@njit(cache=True, nogil=True)
def _scale_kept(grad: np.ndarray, keep: np.ndarray, scale: float, out: np.ndarray) -> None:
    """out[k] = grad[k] * scale where keep[k], else 0."""
    factor = np.float32(scale)
    for k in range(grad.size):
        out[k] = grad[k] * factor if keep[k] else np.float32(0.0)
