"""Running the service under uvicorn, in one process or several (`--workers`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tripletlab.index import (
    MANIFEST,
    Calibration,
    check_files,
    check_fits,
    check_model,
    read_manifest,
)
from tripletlab.models import Embedder
from tripletlab.models.engines import current_onnx, require_onnx
from tripletlab.runs import RunDir, checkpoint_sha256, resolve_checkpoint
from tripletlab.serve.app import create_app
from tripletlab.serve.inputs import Limits
from tripletlab.serve.model import hold_threads, load_service_model, share_cores
from tripletlab.serve.state import ServeSettings

ENGINES = ("onnx", "torch")
log = logging.getLogger("tripletlab.serve")
# The options reach each uvicorn worker process through this variable (JSON).
_OPTIONS = "TRIPLETLAB_SERVE_OPTIONS"


def app_from_environment() -> FastAPI:
    """The app of one worker, from the options `serve` put in the environment."""
    options: dict[str, Any] = json.loads(os.environ[_OPTIONS])
    _logging()
    hold_threads(options["threads"])
    settings = ServeSettings(**{**options["settings"], "limits": Limits(**options["limits"])})
    return create_app(
        lambda: load_service_model(options["run"], options["index"], options["engine"],
                                   options["threads"], options["force"]),
        settings, options["hosts"],
    )  # fmt: skip


def _logging() -> None:
    logger = logging.getLogger("tripletlab.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # one line per request, not one more from the root logger


def _check_index(
    run: RunDir, index_dir: str | Path | None, force: bool, precision: float, given: bool
) -> None:
    """Refuse, before serving, an index that is missing (when named), damaged (manifest or
    files), built by another model (unless `force`), unfit for the model's vectors, or
    calibrated without a threshold for a `precision` the user `given` (the default's absence
    is a warning: search works, without a match)."""
    folder = Path(index_dir) if index_dir else run.index
    if index_dir is None and not (folder / MANIFEST).is_file():
        return  # no index: search is off
    manifest = read_manifest(folder)
    check_model(folder, manifest, checkpoint_sha256(run.path), force)
    check_files(folder, manifest)
    embedder = Embedder.from_pretrained(run.path)
    check_fits(folder, manifest["dimension"], bool(manifest["normalized"]),
               embedder.embedding_dim, embedder.config.normalize)  # fmt: skip
    if manifest.get("calibration"):
        _check_precision(folder, manifest["calibration"], precision, given)


def _check_precision(
    folder: Path, calibration: dict[str, Any], precision: float, given: bool
) -> None:
    """A --precision the index's calibration has no threshold for: every search would come
    back without a match. Refused when the user chose it, a warning for the default."""
    try:
        calibrated = Calibration.from_dict(calibration)
    except ValueError as error:
        raise ValueError(f"{folder / MANIFEST}: {error}; calibrate again") from None
    try:
        calibrated.threshold_for(precision)
    except ValueError as error:
        usable = [f"{t.target:g}" for t in calibrated.thresholds if t.distance is not None]
        message = (f"--precision {precision:g}: {str(error).split(';')[0]} in {folder} "
                   f"(thresholds for: {', '.join(usable) or 'none'})")  # fmt: skip
        if given:
            command = f"tripletlab index calibrate {shlex.quote(str(folder))}"
            raise ValueError(f"{message}; choose one of those, or {command} "
                             f"--precision {precision:g}") from None  # fmt: skip
        log.warning("%s: searches come back without a match", message)


def own_hosts(host: str) -> list[str] | None:
    """The Host headers a service bound to `host` accepts: bound to this machine only (any
    loopback address, or a name such as localhost that resolves to loopback only), only its
    own names, so that a web page cannot reach it through a DNS name of its own; None (any)
    when bound to an address others reach."""
    addresses = _addresses(host) if host != "localhost" else [ipaddress.ip_address("::1")]
    if not addresses or not all(_loopback(a) for a in addresses):
        return None
    given = host.lower()
    written = [f"[{given.strip('[]')}]"] if ":" in given else [given, given.rstrip(".")]
    found = [f"[{a}]" if a.version == 6 else str(a) for a in addresses]
    return list(dict.fromkeys([*written, *found, "127.0.0.1", "localhost", "[::1]"]))


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses `host` binds to: itself when an address, else what the name (or a short
    form such as 127.1) resolves to here; none when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(entry[4][0].split("%")[0]) for entry in found]


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def serve(
    run_dir: str | Path,
    index_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "onnx",
    workers: int = 1,
    settings: ServeSettings | None = None,
    force: bool = False,
    announce: Callable[[str], None] | None = None,
    precision_given: bool = True,
) -> None:
    """Serve a run until SIGTERM or Ctrl-C (in-flight requests are finished first).

    `precision_given`: whether the user chose `settings.precision` (else the index's lack of
    a threshold for it is a warning, not an error).

    Checks the run (and exports `model.onnx` once, for all workers, when it is missing)
    before uvicorn starts, then calls `announce` with the service's URL. Each of `workers`
    processes gets cores / workers threads.

    Raises:
        FileNotFoundError: no run or checkpoint. ValueError: bad options.
    """
    import uvicorn

    settings = settings or ServeSettings()
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be from 1 to 65535, got {port}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if engine not in ENGINES:
        raise ValueError(f"unknown --engine {engine!r}; expected {' or '.join(ENGINES)}")
    if workers > 1 and settings.allow_writes:
        raise ValueError("--allow-writes needs --workers 1: each worker holds its own copy of "
                         "the index, and their changes would overwrite each other")  # fmt: skip
    _logging()
    run = RunDir.open(run_dir)
    resolve_checkpoint(run.path)
    _check_index(run, index_dir, force, settings.precision, precision_given)  # not 503s
    if engine == "onnx" and current_onnx(run.path, threads=1) is None:  # export once, for all
        try:
            require_onnx()
        except ValueError:
            pass  # each worker falls back to PyTorch, saying so
        else:
            from tripletlab.export.onnx import export_run_onnx

            export_run_onnx(run.path)
    options = {"run": str(run.path.resolve()), "engine": engine, "force": force,
               "index": str(Path(index_dir).resolve()) if index_dir else None,
               "threads": share_cores(workers),
               "hosts": own_hosts(host),
               "limits": dataclasses.asdict(settings.limits),
               "settings": {k: v for k, v in dataclasses.asdict(settings).items()
                            if k != "limits"}}  # fmt: skip
    os.environ[_OPTIONS] = json.dumps(options)
    if announce is not None:
        announce(f"http://{host}:{port}")
    uvicorn.run("tripletlab.serve.run:app_from_environment", factory=True, host=host, port=port,
                workers=workers, access_log=False, log_level="warning",
                timeout_graceful_shutdown=30)  # fmt: skip
