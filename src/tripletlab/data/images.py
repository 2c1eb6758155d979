"""Labelled uint8 images in memory, and reading image files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, H, W) or (N, H, W, C) with int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 (N, H, W) or (N, H, W, C), "
                f"got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be ({len(self.images)},), got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, in that order."""
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def load_image_file(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Read one image file as uint8 (H, W) for grey or (H, W, 3) for colour, resized to `size`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image Pillow can decode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
