"""DynamicBatcher: concurrent requests share model calls; a full queue and a failing model."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from tripletlab.serve import DynamicBatcher, QueueFullError


def _model(calls: list[int]):
    def model(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        time.sleep(0.02)
        return images.reshape(len(images), -1).sum(1, keepdims=True).astype(np.float32)

    return model


def test_concurrent_requests_are_gathered_and_answered_in_order():
    calls: list[int] = []
    batcher = DynamicBatcher(_model(calls), max_batch=16, max_wait=0.01)

    async def main():
        requests = [np.full((1 + i % 3, 2), i, dtype=np.uint8) for i in range(12)]
        return requests, await asyncio.gather(*(batcher.submit(r) for r in requests))

    requests, answers = asyncio.run(main())
    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer[:, 0], request.sum(1))  # each its own rows
    assert sum(calls) == sum(len(r) for r in requests) and len(calls) < 12
    assert max(calls) <= 16


def test_batching_off_calls_the_model_per_request():
    calls: list[int] = []
    batcher = DynamicBatcher(_model(calls), max_batch=1, max_wait=0.01)

    async def main():
        await asyncio.gather(*(batcher.submit(np.ones((2, 2), np.uint8)) for _ in range(5)))

    asyncio.run(main())
    assert calls == [2, 2, 2, 2, 2]


def test_a_full_queue_refuses_at_once_and_a_failing_model_fails_only_its_batch():
    release = threading.Event()
    calls = []

    def model(images: np.ndarray) -> np.ndarray:
        release.wait(5)
        calls.append(len(images))
        if len(calls) == 1:  # the first call fails, the next works
            raise RuntimeError("broken weights")
        return np.zeros((len(images), 1), np.float32)

    batcher = DynamicBatcher(model, max_batch=4, max_wait=0.0, max_queue=4)

    async def main():
        first = asyncio.ensure_future(batcher.submit(np.ones((4, 1), np.uint8)))
        await asyncio.sleep(0.05)  # taken by the model, which now waits
        second = asyncio.ensure_future(batcher.submit(np.ones((4, 1), np.uint8)))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit(np.ones((1, 1), np.uint8))
        release.set()
        with pytest.raises(RuntimeError, match="broken weights"):
            await first
        assert (await second).shape == (4, 1)  # the service goes on

    asyncio.run(main())
