"""Freezing like Keras' `trainable`, and BatchNorm inference mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
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


def apply_phase_freeze(model: nn.Module, rule: str) -> nn.Module:
    """Set what a phase trains on a model with a `backbone` (an `Embedder`): "none" trains
    everything; "backbone" freezes the backbone (the head and classifier train);
    "until:<layer>" freezes the backbone's direct children before `<layer>` and trains it and
    those after it (the Keras guide's "unfreeze the top layers"). Returns `model`.

    Raises:
        ValueError: an unknown rule, or a layer that is not a direct child of the backbone
            (the message lists them).
    """
    unfreeze(model)
    if rule == "none":
        return model
    if rule == "backbone":
        freeze(model.backbone)
        return model
    if not rule.startswith("until:"):
        raise ValueError(f"unknown freeze rule {rule!r}; expected none, backbone or until:<layer>")
    freeze(model.backbone)
    try:
        unfreeze(model.backbone, from_layer=rule.removeprefix("until:"))
    except ValueError as error:
        raise ValueError(f"freeze {rule!r}: the backbone has {error}") from None
    return model


def check_phase_freezes(model: nn.Module, rules: list[str]) -> None:
    """Refuse any phase's freezing rule that does not fit `model` (an `until:` layer the
    backbone lacks), before training starts; leaves everything trainable.

    Raises:
        ValueError: naming the phase (1-based) and the backbone's layers.
    """
    try:
        for number, rule in enumerate(rules, 1):
            try:
                apply_phase_freeze(model, rule)
            except ValueError as error:
                raise ValueError(f"phases[{number}]: {error}") from None
    finally:
        unfreeze(model)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block; after it every submodule is back in the mode it
    had. `module.train(was_training)` would not do: it switches every layer, so a BatchNorm
    kept in inference mode by `set_train_mode` (frozen, or `bn_train` false) and a frozen
    backbone's dropout would train again after an evaluation in the middle of an epoch."""
    modes = [(layer, layer.training) for layer in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for layer, training in modes:
            layer.training = training
