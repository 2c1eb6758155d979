"""A Keras-style model summary: layers, output shapes and (non-)trainable parameters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from tripletlab.models.freezing import evaluating


@contextmanager
def layer_by_layer(model: nn.Module) -> Iterator[nn.Module]:
    """Run every layer on its own inside the block: modules that can compute several layers in
    one pass (a boolean `fused` attribute, as `SeedCNNBackbone` has) are switched to their
    layers one by one, and switched back afterwards."""
    fused = [m for m in model.modules() if isinstance(getattr(m, "fused", None), bool)]
    before = [m.fused for m in fused]
    for module in fused:
        module.fused = False
    try:
        yield model
    finally:
        for module, value in zip(fused, before, strict=True):
            module.fused = value


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) as Keras counts them: BatchNorm running mean and variance are
    non-trainable weights; PyTorch's `num_batches_tracked` counter is not a weight."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    for layer in model.modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            frozen += layer.running_mean.numel() + layer.running_var.numel()
    return trainable, frozen


def summary(model: nn.Module, example: Tensor, print_fn=print) -> str:
    """Print and return a table of the leaf layers: name, type, output shape, parameters,
    then total, trainable and non-trainable parameters.

    Args:
        model: any module; it is run once on `example` (in eval mode, without gradients).
        example: an input batch, e.g. `torch.zeros(1, 28, 28, dtype=torch.uint8)`.
    """
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, layer in model.named_modules():
        if name and not list(layer.children()):

            def record(mod, _inputs, output, name=name):
                if any(row[0] == name for row in rows):
                    return  # a layer called twice (a shared ReLU) is listed once
                shape = tuple(output.shape) if isinstance(output, Tensor) else "?"
                own = sum(p.numel() for p in mod.parameters(recurse=False))
                if isinstance(mod, _BatchNorm) and mod.track_running_stats:
                    own += mod.running_mean.numel() + mod.running_var.numel()
                rows.append((name, type(mod).__name__, str(shape).replace(",)", ")"), own))

            hooks.append(layer.register_forward_hook(record))
    try:
        with torch.no_grad(), layer_by_layer(model), evaluating(model):  # every layer's hook
            model(example)  # sees its output
    finally:
        for hook in hooks:
            hook.remove()
    trainable, frozen = parameter_counts(model)
    widths = [max(len(r[0]) for r in [*rows, ("Layer", "", "", 0)]), 18, 20, 12]
    lines = [f"{'Layer':<{widths[0]}}  {'Type':<{widths[1]}}  {'Output shape':<{widths[2]}}  "
             f"{'Param #':>{widths[3]}}"]  # fmt: skip
    lines.append("=" * len(lines[0]))
    for name, kind, shape, count in rows:
        lines.append(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape:<{widths[2]}}  "
                     f"{count:>{widths[3]},}")  # fmt: skip
    lines.append("=" * len(lines[0]))
    lines.append(f"Total params: {trainable + frozen:,}")
    lines.append(f"Trainable params: {trainable:,}")
    lines.append(f"Non-trainable params: {frozen:,}")
    text = "\n".join(lines)
    print_fn(text)
    return text
