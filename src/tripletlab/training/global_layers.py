"""Layers that compute, on each rank of a distributed run, what they compute on those rows of
the global batch: BatchNorm over the global batch, dropout with the global batch's masks, and
`for_global_batch`, which converts a model's layers (see `tripletlab.training.distributed`)."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from tripletlab.models.batch_part import current_part, draw_layout
from tripletlab.training.distributed import world


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, differentiable: the gradient of each rank's input
    is the sum of the ranks' output gradients (PyTorch's differentiable all-reduce in
    `torch.distributed.nn` is deprecated)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of a distributed run, on any device and backend, for
    inputs (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W).

    In training mode under `torch.distributed` the mean and the (biased) variance are those of
    every rank's rows (two differentiable all-reduces: the sums, then the squared deviations),
    so outputs, gradients and running statistics equal one process on the concatenated batch
    (to float32 rounding). Otherwise it is PyTorch's BatchNorm.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected an input (N, C, ...), got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        given = x.dtype  # bfloat16 under autocast: statistics in float32, as PyTorch's
        x = x if given in (torch.float32, torch.float64) else x.float()
        all_reduce = _SumOverRanks.apply
        dims, shape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
        count = x.new_tensor([x.numel() // x.shape[1]])
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centered = x - mean.view(shape)
        var = all_reduce(centered.square().sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum
                if momentum is None:  # a cumulative average, as PyTorch's BatchNorm
                    momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(given)


class GlobalDropout(nn.Dropout):
    """`nn.Dropout` whose mask, inside `tripletlab.models.batch_part.batch_part(start,
    total)`, is rows `start`.. of the mask PyTorch draws for the whole batch of `total` rows:
    the mask one process on the global batch applies (and the same draws on every rank).
    Otherwise it is `nn.Dropout`. Input (N, ...); inside a part never in place."""

    def forward(self, x: Tensor) -> Tensor:
        part = current_part()
        if not self.training or self.p == 0.0 or part is None:
            return super().forward(x)
        start, total = part
        ones = torch.ones((total, *x.shape[1:]), dtype=x.dtype, device=x.device)
        mask = F.dropout(ones.contiguous(memory_format=draw_layout(x)), self.p, True)
        return x * mask[start : start + len(x)]


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def for_global_batch(module: nn.Module) -> nn.Module:
    """`module` with every `nn.BatchNorm1d/2d/3d` (`nn.Dropout`) in it, itself included,
    turned into a `GlobalBatchNorm` (`GlobalDropout`) sharing its parameters, statistics, mode
    and `requires_grad`: layers whose rows depend on the batch or on per-element random draws
    compute on each rank what they compute on those rows of the global batch. Other layers of
    that kind (subclasses, `Dropout2d`, ...) are named in a warning: they stay per rank."""
    if type(module) is nn.Dropout:
        return GlobalDropout(module.p, module.inplace).train(module.training)
    if type(module) in _BATCHNORMS:
        like = next(iter([*module.parameters(), *module.buffers()]), torch.empty(0))
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats,
                                    device=like.device, dtype=like.dtype)  # fmt: skip
        converted.load_state_dict(module.state_dict())
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        return converted.train(module.training)
    if isinstance(module, (_BatchNorm, nn.modules.dropout._DropoutNd)) and not isinstance(
        module, (GlobalBatchNorm, GlobalDropout)
    ):
        warnings.warn(
            f"{type(module).__name__} keeps per-rank batch statistics or random draws in "
            "distributed training: the steps differ from one process on the global batch",
            stacklevel=2,
        )
    for name, child in module.named_children():
        setattr(module, name, for_global_batch(child))
    return module
