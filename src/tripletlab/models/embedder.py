"""The `Embedder`: rescaling (uint8 in) -> augmentation -> input scaling -> backbone ->
dropout -> linear head -> L2 normalization, and an optional classifier on the embedding.

The head and the normalization can be switched off (`ModelConfig.head`, `.normalize`), to use
a backbone's raw output as the embedding, as the triplet-loss MNIST project did. The classifier
(`ModelConfig.classes`, set by training with a cross-entropy loss) reads the head's output
before normalization: one logit per class, or one in all for two classes (binary).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tripletlab.config import EMBED_BATCH_SIZE, ModelConfig, RunConfig, plain, upgrade_saved
from tripletlab.models.augment import Augment
from tripletlab.models.freezing import evaluating
from tripletlab.models.initialization import keras_init
from tripletlab.models.registry import build_backbone
from tripletlab.models.scaling import InputScaling
from tripletlab.runs import CHECKPOINT_CONFIG, read_checkpoint, write_checkpoint
from tripletlab.utils.pages import release_pages


class Rescale(nn.Module):
    """Raw pixels (N, H, W) or (N, H, W, C), any dtype, 0..255 -> float (N, C, H, W) in [0, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        if images.ndim != 4 or images.shape[-1] != self.channels:
            raise ValueError(
                f"expected images (N, H, W) or (N, H, W, {self.channels}), "
                f"got shape {tuple(images.shape)}"
            )
        return images.permute(0, 3, 1, 2).float().div(255.0)


def feature_size(backbone: nn.Module, channels: int, image_size: tuple[int, int]) -> int:
    """Number of features the backbone produces for one image of `image_size`.

    Raises:
        ValueError: the backbone does not take such an image (one too small for its layers), or
            does not return (N, F) features.
    """
    with torch.no_grad(), evaluating(backbone):
        try:
            out = backbone(torch.zeros(1, channels, *image_size))
        except RuntimeError as error:  # e.g. "Output size is too small"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason"
            raise ValueError(
                f"the backbone cannot take {channels}-channel images of {image_size[0]} x "
                f"{image_size[1]} ({reason}); choose a larger model.image_size"
            ) from None
    if out.ndim != 2:
        raise ValueError(f"backbone must return (N, F) features, got shape {tuple(out.shape)}")
    return int(out.shape[1])


class Embedder(nn.Module):
    """Maps raw uint8 images to float32 embeddings (N, D), L2-normalized by default."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.rescale = Rescale(self.config.channels)
        config = self.config
        self.augment = Augment(config.flip, config.rotation, config.translate)
        self.scaling = InputScaling(config)
        self.tta_shift = config.tta_shift
        self.tta_flip = config.tta_flip
        self.use_views = True  # `embed(..., views=False)` turns the test-time views off
        self.backbone = build_backbone(
            config.backbone, channels=config.channels, image_size=config.image_size,
            imports=config.imports,
        )  # fmt: skip
        features = feature_size(self.backbone, self.config.channels, self.config.image_size)
        self.num_features = features
        self.dropout: nn.Module = (
            nn.Dropout(config.head_dropout) if config.head_dropout > 0 else nn.Identity()
        )
        if self.config.head:
            self.head: nn.Module = nn.Linear(features, self.config.embedding_dim)
            keras_init(self.head)
        else:  # the backbone's own output is the embedding
            self.head = nn.Identity()
        self.embedding_dim = self.config.embedding_dim if self.config.head else features
        self.classifier: nn.Linear | None = None
        if config.classes:
            outputs = 1 if len(config.classes) == 2 else len(config.classes)
            self.classifier = nn.Linear(self.embedding_dim, outputs)
            keras_init(self.classifier)

    @property
    def head_device(self) -> torch.device:
        """The device of the model's parameters (where cached features must go)."""
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    def encode(self, images: Tensor) -> Tensor:
        """The backbone's features of uint8 images (N, H, W[, C]): (N, F), after rescaling,
        augmentation (training mode) and input scaling."""
        return self.backbone(self.scaling(self.augment(self.rescale(images))))

    def project(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        """Backbone features (N, F) -> embeddings (N, D) and classifier logits (N, outputs), or
        None without a classifier. Training from cached features calls this alone."""
        vectors = self.head(self.dropout(features))
        logits = self.classifier(vectors) if self.classifier is not None else None
        return self._normalize(vectors), logits

    def forward(self, images: Tensor) -> Tensor:
        """uint8 images (N, H, W) or (N, H, W, C) -> embeddings (N, D).

        In eval mode with test-time views (`views` > 1) the embedding is the mean of those of
        the views, L2-normalized again when the model normalizes: with `tta_flip` the image and
        its mirror image; with `tta_shift` k > 0 each of those and its copies rolled by k
        pixels up, down, left and right.
        """
        return self.outputs(images)[0]

    @property
    def views(self) -> int:
        """Test-time views per image: 1, or 2 (mirror) times 5 (shifts) when they are on."""
        return (2 if self.tta_flip else 1) * (5 if self.tta_shift > 0 else 1)

    def outputs(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """uint8 images (N, H, W[, C]) -> embeddings (N, D) and logits (N, outputs) or None
        (see `forward`; with test-time views the logits are averaged over the views too)."""
        x = self.scaling(self.augment(self.rescale(images)))  # (N, C, H, W) floats
        views = self.views if self.use_views and not self.training else 1
        if views > 1:  # (views * N, C, H, W), view-major
            if self.tta_flip:
                x = torch.cat([x, x.flip(3)])
            if self.tta_shift > 0:
                k = self.tta_shift
                x = torch.cat([x, x.roll(k, 2), x.roll(-k, 2), x.roll(k, 3), x.roll(-k, 3)])
        embeddings, logits = self.project(self.backbone(x))
        if views > 1:
            embeddings = self._normalize(embeddings.unflatten(0, (views, -1)).mean(0))
            if logits is not None:
                logits = logits.unflatten(0, (views, -1)).mean(0)
        return embeddings, logits

    def _normalize(self, embeddings: Tensor) -> Tensor:
        if not self.config.normalize:
            return embeddings
        # Same epsilon as tf.math.l2_normalize.
        return embeddings * torch.rsqrt(embeddings.square().sum(1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def embed(
        self, images: np.ndarray | Tensor, batch_size: int = EMBED_BATCH_SIZE, views: bool = True
    ) -> np.ndarray:
        """Embed images in eval mode, in batches, without gradients.

        Args:
            images: uint8 (N, H, W) or (N, H, W, C).
            batch_size: images per forward pass (with test-time views, that many divided by
                `views` images, so that a pass still holds about `batch_size` views). The default
                keeps activations small (see `tripletlab.config.EMBED_BATCH_SIZE`).
            views: False embeds the images alone even when `tta_shift` or `tta_flip` ask for
                test-time views.
        Returns:
            float32 array (N, D).
        Raises:
            ValueError: images that are not uint8 or not of the model's size and channels, a
                batch size below 1, or a model that gives NaN or Inf (its weights are broken).
        """
        return self.embed_and_classify(images, batch_size, views)[0]

    @torch.no_grad()
    def embed_and_classify(
        self, images: np.ndarray | Tensor, batch_size: int = EMBED_BATCH_SIZE, views: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`embed`, and the classifier's probabilities from the same passes.

        Returns:
            float32 embeddings (N, D), and float32 probabilities (N, len(config.classes)) in the
            order of `config.classes` (None without a classifier).
        Raises:
            ValueError: as `embed`.
        """
        data = self._check_images(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        used_views, self.use_views = self.use_views, views
        try:
            with evaluating(self):
                device = next((p.device for p in self.parameters()), torch.device("cpu"))
                if views:
                    batch_size = max(1, batch_size // self.views)
                # Each pass's outputs are copied into arrays made once: thousands of small
                # tensors kept between passes pin the freed activations around them in the
                # allocator's heap (96,000 images of 64 x 64 x 3 grew the process by 1.5 GB).
                embeddings, logits = torch.empty(len(data), self.embedding_dim), None
                for number, start in enumerate(range(0, len(data), batch_size), 1):
                    vectors, scores = self.outputs(data[start : start + batch_size].to(device))
                    stop = start + len(vectors)
                    embeddings[start:stop] = vectors.float().cpu()
                    if scores is not None:
                        if logits is None:
                            logits = torch.empty(len(data), scores.shape[1])
                        logits[start:stop] = scores.float().cpu()
                    if number % 64 == 0:  # memory-mapped images: read pages leave memory
                        release_pages(images)
        finally:
            self.use_views = used_views
        if not torch.isfinite(embeddings).all():
            raise ValueError("the model gives NaN or Inf embeddings: its weights are not usable")
        if self.classifier is None:
            return embeddings.numpy(), None
        if logits is None:  # no image
            return embeddings.numpy(), np.zeros((0, len(self.config.classes)), np.float32)
        return embeddings.numpy(), probabilities(logits).numpy()

    def _check_images(self, images: np.ndarray | Tensor) -> Tensor:
        """`images` as a uint8 tensor, refused with a clear message unless they are uint8
        (N, H, W[, C]) of the model's size and channels."""
        data = torch.as_tensor(images)
        if data.dtype != torch.uint8:
            raise ValueError(
                f"Embedder.embed takes uint8 images (0..255), got {data.dtype}; images in [0, 1] "
                "convert with (x * 255).round().astype(np.uint8)"
            )
        height, width = self.config.image_size
        if data.ndim not in (3, 4) or tuple(data.shape[1:3]) != (height, width):
            raise ValueError(
                f"expected images (N, {height}, {width}) or (N, {height}, {width}, "
                f"{self.config.channels}), the model's input size, got shape {tuple(data.shape)}; "
                "resize them (tripletlab embed does)"
            )
        return data

    def save(
        self,
        directory: Path,
        extra: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> Path:
        """Write a checkpoint folder (`model.safetensors` + `config.json`, with `extra` in the
        config and `files` beside them) atomically."""
        config = {"model": plain(dataclasses.asdict(self.config)), **(extra or {})}
        return write_checkpoint(directory, self.state_dict(), config, files)

    @classmethod
    def from_pretrained(cls, path: str | Path, which: str = "best") -> Embedder:
        """Load from a run folder (its `best` checkpoint, else `last`) or a checkpoint folder."""
        state, config = read_checkpoint(Path(path), which)
        if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
            raise ValueError(f"checkpoint in {path}: its {CHECKPOINT_CONFIG} has no model section")
        try:
            model_config = RunConfig.from_dict(upgrade_saved({"model": config["model"]})).model
        except ValueError as error:
            raise ValueError(f"checkpoint in {path}: its {CHECKPOINT_CONFIG}: {error}") from None
        embedder = cls(model_config)
        try:
            embedder.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint in {path} does not match its {embedder.config.backbone} model "
                f"(saved by another version?): {str(error).splitlines()[-1].strip()[:300]}"
            ) from error
        return embedder.eval()


def probabilities(logits: Tensor) -> Tensor:
    """Class probabilities (N, C) from classifier logits: softmax over (N, C), or for one
    logit (N, 1) of a binary classifier, [1 - sigmoid, sigmoid] (the second class's logit)."""
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)
