"""The Keras guide's feature extraction: run a frozen backbone once over the training images
and train the head on its outputs.

It applies to a phase that freezes the whole backbone when the model augments nothing: the
frozen backbone then runs in inference mode (BatchNorm and dropout, Keras' `training=False`),
so its output for an image is the same every epoch and training from the cache gives the
same steps as running the backbone each time. Features stay in memory up to
`IN_MEMORY_BYTES`; beyond that they go to a memory-mapped file in the temporary folder,
removed when the phase ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tripletlab.config import PhaseConfig, RunConfig
from tripletlab.data.sharding import part_sizes
from tripletlab.models import Embedder, evaluating
from tripletlab.training.distributed import all_gather_rows, world

IN_MEMORY_BYTES = 2 << 30


def caches_features(config: RunConfig, model: Embedder, phase: PhaseConfig) -> bool:
    """Whether `phase` trains on cached backbone features: it freezes the whole backbone, the
    model augments nothing and `train.feature_cache` is on."""
    return config.train.feature_cache and phase.freeze == "backbone" and not model.augment.enabled


class FeatureCache:
    """Backbone features (N, F) float32 of a set of images; `cache[indices]` -> (B, F) tensor.

    Under `torch.distributed` each rank runs the backbone on its part of every chunk of
    `batch_size` x world-size images (1 / world-size of the images, where each rank once ran
    it on all of them) and all ranks receive every chunk's features, in order.

    Args:
        model: the embedder whose (frozen) backbone makes the features.
        images: uint8 images (N, H, W[, C]).
        batch_size: images per forward pass.
        progress: called with (done, total) after each pass.
    """

    def __init__(
        self,
        model: Embedder,
        images: Tensor,
        batch_size: int,
        progress=None,
        in_memory_bytes: int = IN_MEMORY_BYTES,
    ) -> None:
        count, size = len(images), model.num_features
        self._folder: tempfile.TemporaryDirectory | None = None
        if count * size * 4 <= in_memory_bytes:
            self.features: np.ndarray = np.empty((count, size), dtype=np.float32)
        else:
            self._folder = tempfile.TemporaryDirectory(prefix="tripletlab-features-")
            path = Path(self._folder.name) / "features.f32"
            self.features = np.lib.format.open_memmap(path, "w+", np.float32, (count, size))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        rank, world_size = world()
        step = batch_size * world_size  # a global chunk: each rank encodes its part of it
        try:
            with torch.no_grad(), evaluating(model):
                for start in range(0, count, step):
                    rows = part_sizes(min(step, count - start), world_size)
                    first = start + sum(rows[:rank])
                    batch = images[first : first + rows[rank]].to(device)
                    local = model.encode(batch).float() if len(batch) else _none(size, device)
                    # Gathered on the model's device, through the run's process group (gloo,
                    # as for the global batch's embeddings).
                    self.features[start : start + sum(rows)] = all_gather_rows(local, rows).cpu()
                    if progress is not None:
                        progress(start + sum(rows), count)
        except BaseException:  # interrupted or failed: leave no file behind
            self.close()
            raise
        self.on_disk = self._folder is not None

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, indices: Tensor) -> Tensor:
        """Features of `indices` (B,) as a float32 tensor (B, F)."""
        return torch.from_numpy(np.ascontiguousarray(self.features[indices.numpy()]))

    def close(self) -> None:
        """Release the features (and remove the file of memory-mapped ones)."""
        self.features = np.zeros((0, 0), dtype=np.float32)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def _none(size: int, device: torch.device) -> Tensor:
    """(0, size) float32: a rank's part of a last chunk smaller than the world."""
    return torch.zeros((0, size), dtype=torch.float32, device=device)
