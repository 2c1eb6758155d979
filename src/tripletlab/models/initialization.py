"""Weight initialisation as Keras does it, for the networks ported from Keras recipes."""

from __future__ import annotations

from torch import nn


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for convolutions and linear layers, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
