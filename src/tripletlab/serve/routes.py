"""The endpoints of the API (see `app`): the page, and the model's (embed, search, predict,
compare); the gallery's items are in `items`. Every read and change of the index runs in the
model's thread (`DynamicBatcher.run`), one at a time, so no request sees it half changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from tripletlab.index import MAX_K
from tripletlab.runs import METRICS_FILE
from tripletlab.search import predictions
from tripletlab.serve.inputs import ApiError, read_request, whole_number
from tripletlab.serve.items import add_item_routes
from tripletlab.serve.state import State
from tripletlab.utils.io import shown_name

STATIC = Path(__file__).with_name("static")


def add_routes(app: FastAPI, state: State) -> None:
    """Register every endpoint on `app`."""
    _add_model_routes(app, state)
    add_item_routes(app, state)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The web page: search by an image, compare two (plain HTML, CSS and JavaScript)."""
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _add_model_routes(app: FastAPI, state: State) -> None:
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
        about = await batcher.run(model.info)
        batching = {"max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait * 1000,
                    "model_calls": calls}  # fmt: skip
        return {**about, "max_k": min(limits.max_k, MAX_K), "batching": batching}

    @app.post("/v1/embed")
    async def embed(request: Request) -> dict[str, Any]:
        """Images (multipart files, or JSON `{"images": [base64]}`) -> embeddings."""
        files, _ = await read_request(request, limits)
        vectors = await state.embed(await state.images_of(files))
        return {"dimension": int(vectors.shape[1]), "embeddings": vectors.tolist()}

    @app.post("/v1/search")
    async def search(request: Request) -> dict[str, Any]:
        """Images and `k` -> each image's k nearest gallery items, and the match (label or
        unknown) at the calibrated threshold where the index is calibrated."""
        index = state.index()
        files, fields = await read_request(request, limits)
        k = whole_number({**fields, **request.query_params}, "k", 10, 1, min(limits.max_k, MAX_K))
        distances, ids, labels, sources = await state.search(await state.images_of(files), k)
        threshold = _threshold(state)
        results = []
        for row in range(len(ids)):
            found = ids[row] >= 0
            neighbours = [{"id": int(i), "label": shown_name(str(y)),
                           "distance": float(d),
                           "source": shown_name(str(s))}
                          for i, y, d, s in zip(ids[row][found], labels[row][found],
                                                distances[row][found], sources[row][found],
                                                strict=True)]  # fmt: skip
            match = _match(neighbours, threshold, state.settings.precision)
            results.append({"neighbours": neighbours, "match": match})
        return {"k": k, "distance": index.distance, "results": results}

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """Images (and `top`) -> each image's most probable class and its probability, from
        the run's classifier (409 when the run was trained without one)."""
        model, batcher = state.ready()
        names = list(model.embedder.config.class_names)
        if model.embedder.classifier is None:
            raise ApiError(
                409,
                "this run's model has no classifier (train with --loss "
                "cross-entropy or semihard+ce); search and compare still work",
            )
        files, fields = await read_request(request, limits)
        top = whole_number({**fields, **request.query_params}, "top", 1, 1, len(names))
        found = predictions(await batcher.run(model.classify, await state.images_of(files)),
                            names, top)  # fmt: skip
        return {"results": [{"label": p.label, "probability": p.probability,
                             "top": [{"label": n, "probability": v} for n, v in p.top]}
                            for p in found]}  # fmt: skip

    @app.post("/v1/compare")
    async def compare(request: Request) -> dict[str, Any]:
        """Two images -> their distance, and same or different at the calibrated threshold
        (the verification threshold of metrics.json when there is no calibrated index)."""
        model, _ = state.ready()
        files, _ = await read_request(request, limits)
        a, b = await state.embed(await state.images_of(files, count=(2, 2)))
        threshold, source = _threshold(state), "index calibration"
        # The index's threshold is in the index's distance; metrics.json's is Euclidean.
        distance = model.index.distance if threshold is not None else model.run.config.loss.distance
        # Unit vectors only: their Euclidean distance says what their angle is.
        unit = model.embedder.config.normalize or distance != "angular"
        if threshold is None and model.verification_threshold is not None and unit:
            threshold = _from_l2(model.verification_threshold, distance)
            source = f"verification in {METRICS_FILE}"
        value = _pair_distance(a, b, distance)
        same = None if threshold is None else bool(value <= threshold)
        return {"distance": value, "metric": distance, "same": same, "threshold": threshold,
                "threshold_from": source if threshold is not None else None}  # fmt: skip


def _threshold(state: State) -> float | None:
    model, _ = state.ready()
    index = model.index
    if index is None or index.calibration is None:
        return None
    try:
        return index.calibration.threshold_for(state.settings.precision)
    except ValueError:
        return None


def _match(neighbours: list[dict[str, Any]], threshold: float | None, precision: float) -> Any:
    """The nearest item's label within the threshold, else unknown (None: not calibrated)."""
    if threshold is None:
        return None
    near = neighbours[0] if neighbours else None
    label = near["label"] if near and near["distance"] <= threshold else "unknown"
    return {"label": label, "threshold": threshold, "precision": precision}


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
