"""`TripletNet`: anchor, positive and negative through one shared embedding network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tripletlab.models.embedder import Embedder


class TripletNet(nn.Module):
    """Three inputs, one set of weights, the three embeddings concatenated.

    `TripletNet.embedder` is the shared network; it is what gets saved and used for inference,
    so a triplet-trained run evaluates, exports and embeds like any other.
    """

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Three uint8 image batches (N, H, W[, C]) -> (N, 3 * D).

        Each input goes through the shared network on its own, as in the original model, so
        layers with batch statistics see each kind of input separately.
        """
        parts = [self.embedder(images) for images in (anchor, positive, negative)]
        return torch.cat(parts, dim=1)
