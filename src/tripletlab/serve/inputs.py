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
    max_body: int = 64 * 1024 * 1024  # one request body, read at most this far

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_images", "max_k", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (a chunked body
    declares no length), so that no request holds more than that in memory.

    Raises:
        ApiError: 413.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.form() and .json() parse: read once, here
    return body


async def read_request(request: Request, limits: Limits) -> tuple[list[bytes], dict[str, Any]]:
    """The image files and the other fields of a multipart form or a JSON body
    (`{"images": [base64, ...], ...}`).

    Raises:
        ApiError: 415 another content type, 400 malformed JSON / form / base64, 413 too many
            images or a file too large.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise ApiError(
            415, f"send images as multipart/form-data or application/json, not {kind or 'nothing'}"
        )
    body = await read_body(request, limits.max_body)
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=limits.max_images + 1, max_fields=100)
        except Exception as error:  # python-multipart's many parse errors
            if "Too many files" in str(error):
                raise ApiError(413, f"at most {limits.max_images} images in one request") from None
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
    try:  # JSON
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(400, f"malformed JSON: {str(error)[:200]}") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("images", []), list):
        raise ApiError(400, 'expected a JSON object with "images": [base64 strings]')
    encoded = parsed.get("images", [])
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
    return data, {k: v for k, v in parsed.items() if k != "images"}


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
        except Exception as error:  # a decoder's own failure on malformed bytes: still theirs
            raise ApiError(422, f"image {position}: not a readable image ({error!r})") from None
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
    except (TypeError, ValueError, OverflowError):
        raise ApiError(422, f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}, got {number}")
    return number
