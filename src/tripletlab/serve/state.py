"""What the routes share: the settings, the loaded model and its batcher."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import numpy as np

from tripletlab.serve.batching import DynamicBatcher, QueueFullError
from tripletlab.serve.inputs import ApiError, Limits, decode_all
from tripletlab.serve.model import ServiceModel

log = logging.getLogger("tripletlab.serve")


@dataclass
class ServeSettings:
    """How the service batches and what it accepts."""

    limits: Limits = field(default_factory=Limits)
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 512
    precision: float = 0.99  # the calibrated threshold that /v1/search and /v1/compare use
    allow_writes: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms >= 0")
        if not 0 < self.precision <= 1:
            raise ValueError(f"precision must be in (0, 1], got {self.precision}")


class State:
    """The loaded model and its batcher (None until loaded), shared by the routes."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.model: ServiceModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.failed: str | None = None

    def ready(self) -> tuple[ServiceModel, DynamicBatcher]:
        """The model and batcher, or a 503 while loading."""
        if self.model is None or self.batcher is None:
            message = self.failed or "the model is still loading"
            raise ApiError(503, message, {"Retry-After": "1"})
        return self.model, self.batcher

    async def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of uint8 images through the batcher."""
        _, batcher = self.ready()
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
