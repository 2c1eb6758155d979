"""Freezing like Keras' `trainable`, BatchNorm inference mode, and a Keras-style summary."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def freeze(module: nn.Module) -> nn.Module:
    """Make every parameter of `module` (recursively) non-trainable; returns `module`.

    Frozen BatchNorm layers run in inference mode under `set_train_mode`.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def unfreeze(module: nn.Module, from_layer: str | int | None = None) -> nn.Module:
    """Make parameters trainable again: all of them, or those of the direct children from
    `from_layer` (a child's name or position) to the end, as in the Keras guide's
    "unfreeze the top layers". Returns `module`.

    Raises:
        ValueError: `from_layer` names no child.
    """
    children = list(module.named_children())
    start = 0
    if from_layer is not None:
        names = [name for name, _ in children]
        if isinstance(from_layer, int):
            if not -len(children) <= from_layer < len(children):
                raise ValueError(
                    f"from_layer {from_layer} is out of range (0..{len(children) - 1})"
                )
            start = from_layer % len(children)
        elif from_layer in names:
            start = names.index(from_layer)
        else:
            raise ValueError(f"no layer {from_layer!r}; children are {', '.join(names)}")
    targets = [module] if from_layer is None else [child for _, child in children[start:]]
    for target in targets:
        for parameter in target.parameters():
            parameter.requires_grad_(True)
    return module


def is_frozen(module: nn.Module) -> bool:
    """True when `module` has parameters and none of them is trainable."""
    parameters = list(module.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def set_train_mode(model: nn.Module, bn_train: bool = True) -> nn.Module:
    """`model.train()`, except BatchNorm layers that are frozen, or all of them when
    `bn_train` is False, stay in inference mode (their running statistics do not change).

    This is the Keras rule for `trainable = False` BatchNorm, and the guide's advice to keep
    BatchNorm in inference mode while fine-tuning. Returns `model`.
    """
    model.train()
    for layer in model.modules():
        if isinstance(layer, _BatchNorm) and (not bn_train or is_frozen(layer)):
            layer.eval()
    return model


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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
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
