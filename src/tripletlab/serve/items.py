"""The gallery's endpoints: read its items, and (with `--allow-writes`) add and remove them.
Every read and change runs in the model's thread (`DynamicBatcher.run`), one at a time."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from PIL import Image

from tripletlab.index import EmbeddingIndex
from tripletlab.search.sources import read_image
from tripletlab.serve.inputs import ApiError, read_request
from tripletlab.serve.model import ServiceModel
from tripletlab.serve.state import State
from tripletlab.utils.io import shown_name

log = logging.getLogger(__name__)


def add_item_routes(app: FastAPI, state: State) -> None:
    """Register `/v1/items` (random, by id, its image; add and remove with writes on)."""
    limits = state.settings.limits

    @app.get("/v1/items/random")
    async def random_item() -> dict[str, Any]:
        """A gallery item chosen at random: id, label, source."""
        model, batcher = state.ready()
        state.index()
        return await batcher.run(lambda: _random_item(gallery_of(model)))

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        """A gallery item: id, label, source."""
        model, batcher = state.ready()
        state.index()
        return await batcher.run(lambda: _item(gallery_of(model), item_id))

    @app.get("/v1/items/{item_id}/image")
    async def item_image(item_id: int) -> Response:
        """The item's image as PNG, at the model's input size."""
        model, batcher = state.ready()
        state.index()
        source = await batcher.run(lambda: _item_source(gallery_of(model), item_id))
        # Read off the model's thread: a large file, or MNIST prepared on first use (pip),
        # would hold up every embedding and search.
        png = await asyncio.to_thread(_png, source, model.image_shape)
        if png is None:
            shown = shown_name(source) or "no source"
            raise ApiError(404, f"item {item_id}'s image ({shown}) cannot be read")
        return Response(png, media_type="image/png")

    @app.post("/v1/items")
    async def add_items(request: Request) -> dict[str, Any]:
        """Add images (with a `label` field) to the gallery; saved to the index folder."""
        model, batcher = state.ready()
        _writable(state)
        files, fields = await read_request(request, limits)
        label = fields.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ApiError(422, "give the images' class as the label field")
        vectors = await state.embed(await state.images_of(files))
        ids, count = await batcher.run(_saved, model, _add, vectors, label.strip())
        return {"ids": [int(i) for i in ids], "label": label.strip(), "count": count}

    @app.delete("/v1/items/{item_id}")
    async def delete_item(item_id: int) -> dict[str, Any]:
        """Remove an item from the gallery; saved to the index folder."""
        model, batcher = state.ready()
        _writable(state)
        _, count = await batcher.run(_saved, model, _remove, item_id)
        return {"removed": item_id, "count": count}


# Index work, run in the model's thread.
def gallery_of(model: ServiceModel) -> EmbeddingIndex:
    """The gallery served now; read in the model's thread, where an undone change replaces it
    (a request that found it before may not use the one replaced)."""
    if model.index is None:
        raise ApiError(404, "this service's gallery could not be read back after a failed save")
    return model.index


def _item(index: EmbeddingIndex, item_id: int) -> dict[str, Any]:
    source = _item_source(index, item_id)
    label = index.labels_of(np.array([item_id]))[0]
    name = shown_name(index.label_name(int(label)))
    return {"id": item_id, "label": name, "source": shown_name(source)}


def _item_source(index: EmbeddingIndex, item_id: int) -> str:
    """The stored source of an item (a path may hold bytes that are not UTF-8)."""
    if not 0 <= item_id < 2**63 or index.items.rows(np.array([item_id]))[0] < 0:
        raise ApiError(404, f"no item with id {item_id}")
    return index.sources_of(np.array([item_id]))[0]


def _random_item(index: EmbeddingIndex) -> dict[str, Any]:
    if len(index) == 0:
        raise ApiError(404, "the gallery is empty")
    ids = index.items.ids
    return _item(index, int(ids[np.random.default_rng().integers(len(ids))]))


def _saved(model: ServiceModel, change: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """`change(index, *args)` on the gallery served now (read here, in the model's thread: an
    undone change replaces it), then the index saved to its folder; returns the change's
    result and the gallery's size. A change that cannot be saved is undone: the service goes
    back to the gallery its folder still holds (or, when that cannot be read either, to no
    gallery: search answers 404, never unsaved items)."""
    index = gallery_of(model)
    result = change(index, *args)
    try:
        index.save(model.index_dir)
    except Exception as error:
        log.error("the gallery change could not be saved, so it is undone: %s", error)
        try:
            model.index = EmbeddingIndex.load(model.index_dir, force=True)  # checked at start
        except Exception as unreadable:
            log.error("the saved gallery cannot be read either, so none is served: %s", unreadable)
            model.index = None
        raise ApiError(500, f"the change could not be saved, so it was undone: {error}") from None
    return result, len(index)


def _add(index: EmbeddingIndex, vectors: np.ndarray, label: str) -> np.ndarray:
    names = index.names_with([label])
    ids = index.add(vectors, np.full(len(vectors), names.index(label), dtype=np.int64))
    index.class_names = names  # only once the vectors are in
    return ids


def _remove(index: EmbeddingIndex, item_id: int) -> None:
    _item(index, item_id)
    try:
        index.remove(np.array([item_id]))
    except ValueError as error:  # an HNSW index
        raise ApiError(409, str(error)) from None


def _png(source: str, shape: tuple[int, ...]) -> bytes | None:
    try:
        image = read_image(source, shape[:2], shape[2] if len(shape) == 3 else 1)
    except (ValueError, OSError):
        return None
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _writable(state: State) -> EmbeddingIndex:
    if not state.settings.allow_writes:
        raise ApiError(403, "gallery changes are off: start the service with --allow-writes")
    return state.index()
