"""The HTTP API (FastAPI): embed, search, match, compare, gallery items; health and info.

JSON under `/v1`, OpenAPI at `/openapi.json`, docs at `/docs`. Every error is JSON
`{"error": message}`: 4xx for what the client sent, 503 with Retry-After when the queue is
full or the model is not loaded yet, 500 with an `error_id` (logged with its traceback) when
the model fails; the service goes on either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from tripletlab.index import MAX_K
from tripletlab.serve.batching import DynamicBatcher
from tripletlab.serve.inputs import ApiError
from tripletlab.serve.items import gallery_of
from tripletlab.serve.routes import add_routes
from tripletlab.serve.state import ServeSettings, State

log = logging.getLogger("tripletlab.serve")


def create_app(
    load: Any, settings: ServeSettings | None = None, hosts: list[str] | None = None
) -> FastAPI:
    """The API, loading its model with `load()` (-> ServiceModel) in the background at start:
    `/healthz` answers at once, `/readyz` and the rest once the model is loaded. `hosts`: the
    Host headers accepted (others get 400), so that a web page cannot reach a service bound
    to localhost through a DNS name of its own."""
    settings = settings or ServeSettings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def start() -> None:
            try:
                model = await asyncio.to_thread(load)
            except Exception as error:  # shown by /readyz; the process stays up for /healthz
                log.exception("the model could not be loaded")
                state.failed = f"the model could not be loaded: {error}"
                return
            wait, coming = settings.max_wait_ms / 1000, lambda: state.coming
            state.batcher = DynamicBatcher(model.embed, settings.max_batch, wait,
                                           settings.max_queue, coming=coming)  # fmt: skip
            if model.index is not None:
                state.searcher = DynamicBatcher(
                    lambda images: _neighbours(model, images, settings.limits.max_k),
                    settings.max_batch, wait, settings.max_queue, state.batcher.executor, coming,
                )  # fmt: skip
            state.model = model
            log.info("ready: %s", model.info())

        task = asyncio.create_task(start())
        yield
        task.cancel()
        if state.batcher is not None:
            state.batcher.executor.shutdown(wait=True)
        log.info("stopped (requests in flight were answered first)")

    description = "Embed, search, match and compare images with a tripletlab run."
    app = FastAPI(title="tripletlab", version="1", lifespan=lifespan, description=description)
    app.state.tripletlab = state
    if hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    app.add_middleware(_RequestLog, state=state, max_body=settings.limits.max_body)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("%s %s failed (error id %s)", request.method, request.url.path, error_id,
                  exc_info=error)  # fmt: skip
        return _error(500, f"internal error (error id {error_id})")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    add_routes(app, state)
    return app


class _RequestLog:
    """ASGI middleware: one log line per request (method, path, status, ms), 413 at once for a
    declared body over `max_body`, 403 for a POST or DELETE from a web page of another origin,
    and the count of POSTs under way (what may join a batch).
    Plain ASGI: Starlette's BaseHTTPMiddleware costs a task and two streams a request."""

    def __init__(self, app: Any, state: State, max_body: int) -> None:
        self.app, self.state, self.max_body = app, state, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        length = dict(scope["headers"]).get(b"content-length", b"")

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if length.isdigit() and int(length) > self.max_body:
                refusal = _error(413, f"request body over {self.max_body:,} bytes")
                await refusal(scope, receive, send_status)
                return
            if _cross_origin(scope):
                refusal = _error(403, "requests from web pages of another origin may only read "
                                      "(GET); this service's own page and non-browser clients "
                                      "may post")  # fmt: skip
                await refusal(scope, receive, send_status)
                return
            posted = scope["method"] == "POST"
            self.state.coming += posted
            try:
                await self.app(scope, receive, send_status)
            finally:
                self.state.coming -= posted
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
                     (time.perf_counter() - start) * 1000)  # fmt: skip


def _cross_origin(scope: dict) -> bool:
    """A POST or DELETE that a browser sent from a page of another origin. Browsers send such a
    form POST without asking first (no CORS preflight), so any web site could otherwise add
    to the gallery of a service running with --allow-writes, or load its model. Requests
    without an Origin header (curl, Python) are not a browser's."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    if origin is None:
        return False
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc  # "null" (a file, a sandbox): none
    except ValueError:  # not a URL ("http://[::1", say): not this service's page either
        return True
    return not netloc or netloc.lower() != headers.get(b"host", b"").decode("latin-1").lower()


def _neighbours(model: Any, images: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """A batch of requests' images -> their k nearest items: distances, ids (N, k), and class
    names and sources (N, k) objects. Run in the model's thread, like every change to the index,
    so that a search never sees an index half changed; each request cuts its own k (so that
    its answer does not depend on the requests it was batched with: FAISS's HNSW searches
    max(efSearch, k) deep, and exact search may keep other items of equal distance at the
    k-th place for another k)."""
    index = gallery_of(model)  # read here: an undone gallery change replaces it
    distances, ids = index.search(model.embed(images), min(k, MAX_K))
    present, where = np.unique(index.labels_of(ids), return_inverse=True)
    names = np.array([index.label_name(int(y)) for y in present], dtype=object)
    labels = names[where.reshape(ids.shape)]
    sources = np.array(index.sources_of(ids.ravel()), dtype=object).reshape(ids.shape)
    return distances, ids, labels, sources


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
