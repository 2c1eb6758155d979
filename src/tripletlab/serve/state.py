"""What the routes share: the settings, the loaded model and its batcher."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tripletlab.index import EmbeddingIndex
from tripletlab.serve.batching import DynamicBatcher, QueueFullError
from tripletlab.serve.inputs import ApiError, Limits, decode_all
from tripletlab.serve.model import ServiceModel

log = logging.getLogger("tripletlab.serve")
DEFAULT_PRECISION = 0.99
NO_INDEX = (
    "this service has no index: start it with --index, or build one with tripletlab "
    "index build RUN_DIR"
)


@dataclass
class ServeSettings:
    """How the service batches and what it accepts."""

    limits: Limits = field(default_factory=Limits)
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 512
    # The calibrated threshold that /v1/search and /v1/compare use.
    precision: float = DEFAULT_PRECISION
    allow_writes: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms >= 0")
        if not 0 < self.precision <= 1:
            raise ValueError(f"precision must be in (0, 1], got {self.precision}")
        if self.max_queue < self.limits.max_images:
            raise ValueError("max_queue must hold at least one request's max_images")


class State:
    """The loaded model and its batcher (None until loaded), shared by the routes."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.model: ServiceModel | None = None
        self.batcher: DynamicBatcher | None = None  # embeddings
        self.searcher: DynamicBatcher | None = None  # embeddings and the index's neighbours
        self.failed: str | None = None
        self.coming = 0  # requests being read or computed (the batchers wait for them)

    def ready(self) -> tuple[ServiceModel, DynamicBatcher]:
        """The model and batcher, or a 503 while loading."""
        if self.model is None or self.batcher is None:
            if self.failed:  # not retried: no Retry-After
                raise ApiError(503, self.failed)
            raise ApiError(503, "the model is still loading", {"Retry-After": "1"})
        return self.model, self.batcher

    def index(self) -> EmbeddingIndex:
        """The gallery being served, or a 404 when the service has none."""
        model, _ = self.ready()
        if model.index is None:
            raise ApiError(404, NO_INDEX)
        return model.index

    async def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of uint8 images through the batcher."""
        _, batcher = self.ready()
        return await self._submit(batcher, images)

    async def search(self, images: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """Distances, ids, labels and sources (N, k) of each image's k nearest items:
        embedding and search batched together across requests (`max_k` deep, cut to k)."""
        self.ready()
        if self.searcher is None:
            raise ApiError(404, NO_INDEX)
        rows = await self._submit(self.searcher, images)
        return tuple(part[:, :k] for part in rows)

    async def images_of(self, files: list[bytes], count: tuple[int, int] = (1, 0)) -> np.ndarray:
        """`images`, decoded in a worker thread (large images would stall every request)."""
        return await asyncio.to_thread(self.images, files, count)

    async def _submit(self, batcher: DynamicBatcher, images: np.ndarray) -> Any:
        try:
            return await batcher.submit(images)
        except QueueFullError as error:
            raise ApiError(503, f"the service is busy ({error}); retry shortly",
                           {"Retry-After": "1"}) from None  # fmt: skip
        except ApiError:
            raise
        except Exception as error:
            error_id = uuid.uuid4().hex[:12]
            log.exception("model call failed (error id %s)", error_id)
            raise ApiError(
                500, f"the model failed on this request (error id {error_id})"
            ) from error

    def images(self, files: list[bytes], count: tuple[int, int] = (1, 0)) -> np.ndarray:
        """Decode uploads at the model's input size (see `decode_all`)."""
        model, _ = self.ready()
        return decode_all(files, model.image_shape, self.settings.limits, count)
