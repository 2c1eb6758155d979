"""Request input: images from a multipart upload or JSON (base64), checked against the
service's limits; every problem an `ApiError` with the status and message the client gets."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from tripletlab.data.images import decode_image_bytes


class ApiError(Exception):
    """An error the client caused (4xx) or the service hit (5xx), as JSON."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_bytes: int = 10 * 1024 * 1024  # one image file
    max_pixels: int = 25_000_000  # one image, from its header
    max_images: int = 32  # images in one request
    max_k: int = 100

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_images", "max_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def max_body(self) -> int:
        """A request body's bytes at most (the images, base64's third more, and the rest)."""
        return self.max_images * self.max_bytes * 4 // 3 + 65536


async def read_request(request: Request, limits: Limits) -> tuple[list[bytes], dict[str, Any]]:
    """The image files and the other fields of a multipart form or a JSON body
    (`{"images": [base64, ...], ...}`).

    Raises:
        ApiError: 415 another content type, 400 malformed JSON / form / base64, 413 too many
            images or a file too large.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=limits.max_images + 1, max_fields=100)
        except Exception as error:  # python-multipart's many parse errors
            raise ApiError(400, f"malformed multipart body: {error}") from None
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        if len(files) > limits.max_images:
            raise ApiError(413, f"at most {limits.max_images} images in one request")
        data = []
        for upload in files:
            content = await upload.read(limits.max_bytes + 1)
            if len(content) > limits.max_bytes:
                raise ApiError(413, f"{upload.filename}: larger than {limits.max_bytes:,} bytes")
            data.append(content)
        return data, fields
    if kind == "application/json":
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"malformed JSON: {error}") from None
        if not isinstance(body, dict) or not isinstance(body.get("images", []), list):
            raise ApiError(400, 'expected a JSON object with "images": [base64 strings]')
        encoded = body.get("images", [])
        if len(encoded) > limits.max_images:
            raise ApiError(413, f"at most {limits.max_images} images in one request")
        data = []
        for position, text in enumerate(encoded):
            if not isinstance(text, str):
                raise ApiError(400, f"images[{position}] is not a base64 string")
            try:
                content = base64.b64decode(text.split(",")[-1], validate=True)  # data: URLs too
            except (binascii.Error, ValueError):
                raise ApiError(400, f"images[{position}] is not valid base64") from None
            if len(content) > limits.max_bytes:
                raise ApiError(413, f"images[{position}]: larger than {limits.max_bytes:,} bytes")
            data.append(content)
        return data, {k: v for k, v in body.items() if k != "images"}
    raise ApiError(
        415, f"send images as multipart/form-data or application/json, not {kind or 'nothing'}"
    )


def decode_all(
    files: list[bytes], shape: tuple[int, ...], limits: Limits, count: tuple[int, int] = (1, 0)
) -> np.ndarray:
    """Decode uploaded files to uint8 (N, *shape) at the model's size.

    Args:
        count: (at least, exactly: 0 for any) how many images the endpoint takes.
    Raises:
        ApiError: 400 no image or the wrong number, 422 a file that is not a usable image.
    """
    least, exactly = count
    if exactly and len(files) != exactly:
        raise ApiError(400, f"send exactly {exactly} images, got {len(files)}")
    if len(files) < least:
        raise ApiError(400, "no image in the request")
    size, channels = shape[:2], (shape[2] if len(shape) == 3 else 1)
    images = []
    for position, content in enumerate(files):
        try:
            images.append(decode_image_bytes(content, size, channels, limits.max_pixels))
        except ValueError as error:
            raise ApiError(422, f"image {position}: {error}") from None
    return np.stack(images)


def whole_number(fields: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """A whole-number field of a request (a query parameter wins over a body field).

    Raises:
        ApiError: 422 not a whole number in [low, high].
    """
    value = fields.get(name, default)
    try:
        number = int(value)
        if (isinstance(value, float) and value != number) or isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ApiError(422, f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}, got {number}")
    return number
