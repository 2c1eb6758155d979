"""A training step's forward pass as one module, so that `DistributedDataParallel` can wrap it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.config.kinds import Precision
from tripletlab.models import Embedder, TripletNet


class StepForward(nn.Module):
    """The outputs the loss of one training step needs, from one call.

    Online mode: uint8 images (B, H, W[, C]) -> embeddings (B, D) and the classifier's logits
    (B, outputs) or None. Explicit triplets (`triplets`): anchor, positive and negative
    images, each (B, H, W[, C]), through one shared network -> (B, 3 * D) and None. With
    `cached=True` the inputs are the frozen backbone's features (B, F) and only the head runs.
    `precision="bfloat16"` runs the backbone under autocast (convolutions and matrix products
    in bfloat16) and the head, L2 normalisation and classifier on its features in float32, so
    that the distances the loss mines come from float32 embeddings.
    """

    def __init__(self, model: Embedder, triplets: bool, precision: Precision = "float32") -> None:
        super().__init__()
        self.model = model
        self.triplet_net = TripletNet(model) if triplets else None
        self.precision = precision

    def forward(self, *inputs: Tensor, cached: bool = False) -> tuple[Tensor, Tensor | None]:
        if self.precision == "float32" or cached:
            return self._outputs(*inputs, cached=cached)
        # Each input through the backbone on its own (as TripletNet does), then the cached path.
        with torch.autocast(self.model.head_device.type, dtype=torch.bfloat16):
            features = [self.model.encode(x) for x in inputs]
        return self._outputs(*(f.float() for f in features), cached=True)

    def _outputs(self, *inputs: Tensor, cached: bool) -> tuple[Tensor, Tensor | None]:
        if self.triplet_net is not None:
            if cached:
                return torch.cat([self.model.project(x)[0] for x in inputs], dim=1), None
            return self.triplet_net(*inputs), None
        (x,) = inputs
        return self.model.project(x) if cached else self.model.outputs(x)
