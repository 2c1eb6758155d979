"""Dynamic batching: concurrent requests' images gathered into one model call.

Requests wait at most `max_wait` seconds for others to join, and a call takes at most
`max_batch` images (a request larger than that goes alone); calls run one at a time in a
single worker thread, so the model's own threads are the only ones computing. When more than
`max_queue` images wait, `submit` refuses at once (`QueueFullError`: the service answers 503 with
Retry-After) instead of letting latency pile up. Triton and BentoML batch the same way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


class QueueFullError(Exception):
    """More images wait than the queue holds."""


class DynamicBatcher:
    """Batches `model(images (N, ...)) -> (N, ...)` calls (or a tuple of such arrays) across
    concurrent `submit`s; each request gets its own rows.

    Args:
        model: the model call (in a worker thread).
        max_batch: images per call at most; 1 turns batching off (one request per call).
        max_wait: seconds a request may wait for others to join.
        max_queue: images that may wait at once.
        executor: the one-thread pool the calls run in (shared by batchers of one model).
        coming: how many requests are under way (being read); a batch waits for others only
            while more are coming than wait, so a lone request never waits.
    """

    def __init__(
        self,
        model: Callable[[np.ndarray], Any],
        max_batch: int = 64,
        max_wait: float = 0.005,
        max_queue: int = 1024,
        executor: ThreadPoolExecutor | None = None,
        coming: Callable[[], int] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait >= 0")
        self.model, self.max_batch, self.max_wait, self.max_queue = (
            model, max_batch, max_wait, max_queue,
        )  # fmt: skip
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="model")
        self.coming = coming
        self._waiting: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._queued = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.calls = 0  # model calls made, for the tests and /v1/info

    async def submit(self, images: np.ndarray) -> Any:
        """The model's output for `images`, computed in some batch.

        Raises:
            QueueFullError: the queue is full.
            Exception: whatever the model call raised.
        """
        if self._queued + len(images) > self.max_queue:
            raise QueueFullError(f"{self._queued} images are waiting (at most {self.max_queue})")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._serve(self._wake))
        future = loop.create_future()
        self._waiting.append((images, future))
        self._queued += len(images)
        self._wake.set()  # type: ignore[union-attr]
        return await future

    async def run(self, call: Callable, *args: object) -> object:
        """Run another call (an index search, say) in the model's thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, call, *args)

    def _more(self) -> bool:
        """Whether more requests are under way than wait (others may still join)."""
        return self.coming is None or self.coming() > len(self._waiting)

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        taken = [self._waiting.popleft()]
        count = len(taken[0][0])
        while (self._waiting and self.max_batch > 1
               and count + len(self._waiting[0][0]) <= self.max_batch):  # fmt: skip
            taken.append(self._waiting.popleft())
            count += len(taken[-1][0])
        self._queued -= count
        return taken

    async def _serve(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            if self.max_batch > 1 and self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while self._queued < self.max_batch and loop.time() < deadline and self._more():
                    await asyncio.sleep(min(0.001, max(0.0, deadline - loop.time())))
            while self._waiting:
                taken = self._take()
                self.calls += 1
                try:
                    batch = np.concatenate([images for images, _ in taken])
                    out = await loop.run_in_executor(self.executor, self.model, batch)
                    start = 0
                    for images, future in taken:
                        if not future.done():  # a caller cancelled: nobody waits for it
                            future.set_result(_rows(out, start, len(images)))
                        start += len(images)
                except Exception as error:  # every request of the batch gets it
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(error)


def _rows(out: Any, start: int, count: int) -> Any:
    """Rows start..start+count of the model's output: an array, or a tuple of arrays."""
    if isinstance(out, tuple):
        return tuple(part[start : start + count] for part in out)
    return out[start : start + count]
