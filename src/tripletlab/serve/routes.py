"""The endpoints of the API (see `app`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from tripletlab.index import MAX_K
from tripletlab.runs import METRICS_FILE
from tripletlab.search.sources import read_image
from tripletlab.serve.inputs import ApiError, read_request, whole_number
from tripletlab.serve.state import State

STATIC = Path(__file__).with_name("static")


def add_routes(app: FastAPI, state: State) -> None:
    """Register every endpoint on `app`."""
    limits = state.settings.limits

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        """The model (and index) are loaded; 503 until then."""
        state.ready()
        return {"ready": True}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        """Model, embedding size, distance, index kind and count, engine, version."""
        model, batcher = state.ready()
        calls = batcher.calls + (state.searcher.calls if state.searcher else 0)
        return {**model.info(), "batching": {"max_batch": batcher.max_batch,
                "max_wait_ms": batcher.max_wait * 1000, "model_calls": calls}}  # fmt: skip

    @app.post("/v1/embed")
    async def embed(request: Request) -> dict[str, Any]:
        """Images (multipart `images` files, or JSON `{"images": [base64]}`) -> embeddings."""
        files, _ = await read_request(request, limits)
        vectors = await state.embed(state.images(files))
        return {"dimension": int(vectors.shape[1]), "embeddings": vectors.tolist()}

    @app.post("/v1/search")
    async def search(request: Request) -> dict[str, Any]:
        """Images and `k` -> each image's k nearest gallery items, and the match (label or
        unknown) at the calibrated threshold where the index is calibrated."""
        _model, batcher = state.ready()
        index = _index_of(state)
        files, fields = await read_request(request, limits)
        k = whole_number({**fields, **request.query_params}, "k", 10, 1, min(limits.max_k, MAX_K))
        vectors = await state.embed(state.images(files))
        distances, ids = await batcher.run(index.search, vectors, k)
        threshold = _threshold(state)
        results = []
        for row_d, row_ids in zip(distances, ids, strict=True):
            found = row_ids >= 0
            labels = index.labels_of(row_ids[found])
            sources = index.sources_of(row_ids[found])
            neighbours = [{"id": int(i), "label": index.label_name(int(y)), "distance": float(d),
                           "source": s}
                          for i, y, d, s in zip(row_ids[found], labels, row_d[found], sources,
                                                strict=True)]  # fmt: skip
            match = None
            if threshold is not None:
                near = neighbours[0] if neighbours else None
                label = near["label"] if near and near["distance"] <= threshold else "unknown"
                match = {"label": label, "threshold": threshold,
                         "precision": state.settings.precision}  # fmt: skip
            results.append({"neighbours": neighbours, "match": match})
        return {"k": k, "distance": index.distance, "results": results}

    @app.post("/v1/compare")
    async def compare(request: Request) -> dict[str, Any]:
        """Two images -> their distance, and same or different at the calibrated threshold
        (the verification threshold of metrics.json when there is no calibrated index)."""
        model, _ = state.ready()
        files, _ = await read_request(request, limits)
        a, b = await state.embed(state.images(files, count=(2, 2)))
        distance = model.run.config.loss.distance
        threshold, source = _threshold(state), "index calibration"
        if threshold is None and model.verification_threshold is not None:
            threshold = _from_l2(model.verification_threshold, distance)
            source = f"verification in {METRICS_FILE}"
        value = _pair_distance(a, b, distance)
        same = None if threshold is None else bool(value <= threshold)
        return {"distance": value, "metric": distance, "same": same, "threshold": threshold,
                "threshold_from": source if threshold is not None else None}  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The web page: search by an image, compare two (plain HTML, CSS and JavaScript)."""
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/v1/items/random")
    async def random_item() -> dict[str, Any]:
        """A gallery item chosen at random: id, label, source."""
        index = _index_of(state)
        if len(index) == 0:
            raise ApiError(404, "the gallery is empty")
        ids = index.items.ids
        return _item(index, int(ids[np.random.default_rng().integers(len(ids))]))

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        """A gallery item: id, label, source."""
        index = _index_of(state)
        return _item(index, item_id)

    @app.get("/v1/items/{item_id}/image")
    async def item_image(item_id: int) -> Response:
        """The item's image as PNG, at the model's input size."""
        model, _ = state.ready()
        source = _item(_index_of(state), item_id)["source"]
        shape = model.image_shape
        try:
            image = read_image(source, shape[:2], shape[2] if len(shape) == 3 else 1)
        except (ValueError, OSError):
            raise ApiError(
                404, f"item {item_id}'s image ({source or 'no source'}) cannot be read"
            ) from None
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.post("/v1/items")
    async def add_items(request: Request) -> dict[str, Any]:
        """Add images (with a `label` field) to the gallery; saved to the index folder."""
        model, batcher = state.ready()
        index = _writable(state)
        files, fields = await read_request(request, limits)
        label = fields.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ApiError(422, "give the images' class as the label field")
        vectors = await state.embed(state.images(files))
        if label not in index.class_names:
            index.class_names.append(label)
        labels = np.full(len(vectors), index.class_names.index(label), dtype=np.int64)
        ids = await batcher.run(index.add, vectors, labels)
        await batcher.run(index.save, model.index_dir)
        return {"ids": [int(i) for i in ids], "label": label, "count": len(index)}

    @app.delete("/v1/items/{item_id}")
    async def delete_item(item_id: int) -> dict[str, Any]:
        """Remove an item from the gallery; saved to the index folder."""
        model, batcher = state.ready()
        index = _writable(state)
        _item(index, item_id)
        try:
            await batcher.run(index.remove, np.array([item_id]))
        except ValueError as error:
            raise ApiError(409, str(error)) from None
        await batcher.run(index.save, model.index_dir)
        return {"removed": item_id, "count": len(index)}


def _index_of(state: State) -> Any:
    model, _ = state.ready()
    if model.index is None:
        raise ApiError(404, "this service has no index: start it with --index, or build one "
                            "with tripletlab index build RUN_DIR")  # fmt: skip
    return model.index


def _writable(state: State) -> Any:
    if not state.settings.allow_writes:
        raise ApiError(403, "gallery changes are off: start the service with --allow-writes")
    return _index_of(state)


def _item(index: Any, item_id: int) -> dict[str, Any]:
    if not 0 <= item_id < 2**63 or index.items.rows(np.array([item_id]))[0] < 0:
        raise ApiError(404, f"no item with id {item_id}")
    label = index.labels_of(np.array([item_id]))[0]
    return {"id": item_id, "label": index.label_name(int(label)),
            "source": index.sources_of(np.array([item_id]))[0]}  # fmt: skip


def _threshold(state: State) -> float | None:
    model, _ = state.ready()
    index = model.index
    if index is None or index.calibration is None:
        return None
    try:
        return index.calibration.threshold_for(state.settings.precision)
    except ValueError:
        return None


def _pair_distance(a: np.ndarray, b: np.ndarray, distance: str) -> float:
    """The loss's distance between two embeddings (D,)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if distance == "angular":
        return float(max(1 - a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12), 0.0))
    squared = float(np.square(a - b).sum())
    return squared if distance == "squared-L2" else float(np.sqrt(squared))


def _from_l2(threshold: float, distance: str) -> float:
    """A Euclidean threshold (metrics.json's verification) in the loss's distance (angular:
    for unit vectors, 1 - cos = L2^2 / 2)."""
    return {"L2": threshold, "squared-L2": threshold**2}.get(distance, threshold**2 / 2)
