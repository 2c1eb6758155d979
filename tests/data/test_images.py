"""Decoding image files and uploads (`tripletlab.data.images`)."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from tripletlab.data.images import decode_image_bytes

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\n"


def test_eps_is_not_handed_to_ghostscript():
    """Pillow decodes EPS by running Ghostscript on it: an upload would run an interpreter."""
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # Pillow would take it
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        decode_image_bytes(EPS, (8, 8), 1)


def test_sixteen_bit_images_scale_exactly_in_little_memory():
    """2,500 x 2,500 16-bit pixels (a 12 KB PNG of a ramp) took 143 MB of float64 copies."""
    ramp = (np.arange(2500 * 2500, dtype=np.uint64) * 7919 % 65536).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp.reshape(2500, 2500)).save(buffer, format="PNG")
    tracemalloc.start()
    try:
        pixels = decode_image_bytes(buffer.getvalue(), (2500, 2500), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(pixels.ravel(), expected)  # blocks of rows change nothing
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"  # 35 MiB measured
