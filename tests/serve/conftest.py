"""A run with an index, and the API app around it, for the service tests."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tripletlab.data import load_mnist
from tripletlab.search import build_index, calibrate_index


@pytest.fixture(scope="session")
def served_run(run_04, tmp_path_factory):
    """run_04 with a calibrated index of its training part in RUN_DIR/index."""
    if not (run_04.index / "manifest.json").is_file():
        build_index(run_04)
        calibrate_index(run_04.index)
    return run_04


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def digits():
    """MNIST test images: index 3 is a 0, 2 a 1, 0 a 7 (a digit run_04 never saw)."""
    return load_mnist("test").images


def call(app, requests):
    """Run `requests(client)` (a coroutine function) against the app, once its model is loaded
    or its load has failed."""

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for _ in range(300):
                    ready = await client.get("/readyz")
                    if ready.status_code == 200 or "could not be loaded" in ready.text:
                        break
                    await asyncio.sleep(0.05)
                return await requests(client)

    return asyncio.run(main())
