"""`tripletlab serve`: the HTTP API of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import ForceOption, console, user_errors
from tripletlab.serve.inputs import Limits
from tripletlab.serve.state import DEFAULT_PRECISION, ServeSettings


def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    index: Annotated[Path | None, typer.Option(help="Index folder [RUN_DIR/index if any].")] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (localhost by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    engine: Annotated[str, typer.Option(help="onnx (exported if missing) or torch.")] = "onnx",
    workers: Annotated[int, typer.Option(help="Processes; each gets cores / workers threads.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Images per model call (1: no batching).")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="How long a request waits for others.")] = 5.0,
    max_queue: Annotated[int, typer.Option(help="Images waiting before 503.")] = 512,
    max_images: Annotated[int, typer.Option(help="Images in one request.")] = 32,
    max_image_bytes: Annotated[int, typer.Option(help="Bytes of one image file.")] = 10_485_760,
    max_pixels: Annotated[int, typer.Option(help="Pixels of one image.")] = 25_000_000,
    max_k: Annotated[int, typer.Option(help="Neighbours one search may ask for.")] = 100,
    max_body: Annotated[int, typer.Option(help="Bytes of one request body.")] = 67_108_864,
    precision: Annotated[
        float | None,
        typer.Option(help="The calibrated precision whose threshold matches \\[0.99]."),
    ] = None,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Allow POST and DELETE /v1/items.")
    ] = False,
    force: ForceOption = False,
) -> None:
    """Serve a run: JSON API under /v1 (OpenAPI at /docs), until SIGTERM or Ctrl-C."""
    from tripletlab.serve.run import serve as run_service

    with user_errors():
        limits = Limits(max_image_bytes, max_pixels, max_images, max_k, max_body)
        chosen = DEFAULT_PRECISION if precision is None else precision
        settings = ServeSettings(limits, max_batch, max_wait_ms, max_queue, chosen, allow_writes)
        run_service(
            run_dir,
            index,
            host,
            port,
            engine,
            workers,
            settings,
            force,
            announce=lambda url: console.print(f"serving {run_dir} on {url} (docs: /docs)"),
            precision_given=precision is not None,
        )
