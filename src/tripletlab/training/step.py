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
    `precision="bfloat16"` runs the pass under autocast (convolutions and matrix products in
    bfloat16, the head too) and returns its outputs as float32, for the loss.
    """

    def __init__(self, model: Embedder, triplets: bool, precision: Precision = "float32") -> None:
        super().__init__()
        self.model = model
        self.triplet_net = TripletNet(model) if triplets else None
        self.precision = precision

    def forward(self, *inputs: Tensor, cached: bool = False) -> tuple[Tensor, Tensor | None]:
        if self.precision == "float32":
            return self._outputs(*inputs, cached=cached)
        with torch.autocast(self.model.head_device.type, dtype=torch.bfloat16):
            embeddings, logits = self._outputs(*inputs, cached=cached)
        return embeddings.float(), None if logits is None else logits.float()

    def _outputs(self, *inputs: Tensor, cached: bool) -> tuple[Tensor, Tensor | None]:
        if self.triplet_net is not None:
            if cached:
                return torch.cat([self.model.project(x)[0] for x in inputs], dim=1), None
            return self.triplet_net(*inputs), None
        (x,) = inputs
        return self.model.project(x) if cached else self.model.outputs(x)
