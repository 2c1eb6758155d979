"""Labelled uint8 images in memory, and reading image files."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tripletlab.data.pixel_cache import take_rows

# Refuse images above this many pixels before decoding them (a decompression bomb).
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, H, W) or (N, H, W, C) with int64 labels (N,), and where each came
    from where known: `sources` (N,) str, e.g. `mnist:train:123` or a file's path."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 (N, H, W) or (N, H, W, C), "
                f"got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be ({len(self.images)},), got {self.labels.shape}")
        if self.sources is not None and self.sources.shape != self.labels.shape:
            raise ValueError(f"sources must be ({len(self.images)},), got {self.sources.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, in that order (memory-mapped images: mapped too, when
        large; see `tripletlab.data.pixel_cache.take_rows`)."""
        sources = None if self.sources is None else self.sources[indices]
        images = take_rows(self.images, indices)
        return ImageSet(images, self.labels[indices], self.class_names, sources)


def decode_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to uint8 (H, W) for grey or (H, W, 3) for colour, resized to
    `size` (height, width).

    Only the header is read before the size check, so a huge or non-image file is refused
    without being read whole. The camera's EXIF orientation is applied; 16-bit images are
    scaled to 8 bits (65535 -> 255), not clipped.

    Raises:
        ValueError: empty, not an image, truncated, or more than `MAX_PIXELS` pixels; the
            message says which.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    return _decode(path, size, channels, MAX_PIXELS)


def decode_image_bytes(
    data: bytes, size: tuple[int, int], channels: int, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """`decode_image` of an image file's bytes (an upload, say), refusing more than
    `max_pixels` pixels from the header.

    Raises:
        ValueError: empty, not an image, truncated, or too many pixels; the message says which.
    """
    if not data:
        raise ValueError("empty file")
    return _decode(io.BytesIO(data), size, channels, max_pixels)


def _decode(
    source: Path | io.BytesIO, size: tuple[int, int], channels: int, max_pixels: int
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns about damaged metadata (EXIF, TIFF tags) and decodes the pixels;
            # the pixels are what counts here, and a warning would print Pillow's internals.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=_readable_formats()) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ValueError(f"{width} x {height} pixels is more than {max_pixels:,}")
                image = _eight_bit(ImageOps.exif_transpose(image))
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # fmt: skip
        raise ValueError(str(error) or type(error).__name__) from error


def _readable_formats() -> list[str]:
    """Every format Pillow reads but EPS, which it decodes by running Ghostscript on the file
    (an upload to the service, say) where Ghostscript is installed."""
    Image.init()
    return [name for name in Image.OPEN if name != "EPS"]


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grey images scaled to 8 bits; others as they are. Pillow's
    own conversion to "L" clips such values at 255 (a 16-bit scan comes out almost white).
    Scaled in blocks of rows: float64 copies of a whole 25-megapixel image took 600 MB."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return image
    values = np.asarray(image)
    full = 65535.0 if image.mode != "I" or values.max(initial=0) <= 65535 else values.max()
    scaled = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, values.shape[1] if values.ndim == 2 else 1))
    for start in range(0, len(values), rows):  # about 1M pixels (8 MB of float64) a block
        block = values[start : start + rows].astype(np.float64)
        np.clip(block, 0, full, out=block)
        block *= 255.0 / full
        scaled[start : start + rows] = np.rint(block, out=block)
    return Image.fromarray(scaled, mode="L")


def load_image_file(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Read one image file as uint8 (H, W) for grey or (H, W, 3) for colour, resized to `size`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be used (see `decode_image`); the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return decode_image(path, size, channels)
    except ValueError as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
