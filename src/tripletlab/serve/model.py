"""What the service computes with: a run's model (ONNX Runtime, PyTorch as fallback), its
index if there is one, and the thresholds that decide "same" and "match"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tripletlab import __version__
from tripletlab.index import MANIFEST, EmbeddingIndex, check_fits
from tripletlab.index._faiss import faiss, machine_cores
from tripletlab.models import Embedder
from tripletlab.runs import RunDir, checkpoint_sha256

log = logging.getLogger(__name__)


@dataclass
class ServiceModel:
    """A run's model, its index (None: search and match are unavailable) and thresholds."""

    run: RunDir
    embedder: Embedder
    engine: Any  # Embedder or OnnxEmbedder: .embed(uint8 images) -> (N, D)
    engine_name: str
    index: EmbeddingIndex | None
    index_dir: Path | None
    verification_threshold: float | None

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(H, W) or (H, W, C) of one input image."""
        (height, width), channels = self.embedder.config.image_size, self.embedder.config.channels
        return (height, width) if channels == 1 else (height, width, channels)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, *image_shape) -> float32 (N, D)."""
        return self.engine.embed(images)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, *image_shape) -> class probabilities (N, C) (the model has a classifier):
        ONNX Runtime when the exported model has the classifier, else PyTorch."""
        if getattr(self.engine, "has_classifier", False):
            return self.engine.classify(images)
        return self.embedder.embed_and_classify(images)[1]

    def info(self) -> dict[str, Any]:
        """What /v1/info reports."""
        config = self.embedder.config
        return {
            "version": __version__,
            "run": self.run.path.name,
            "backbone": config.backbone,
            "embedding_dim": self.embedder.embedding_dim,
            "image_size": list(config.image_size),
            "channels": config.channels,
            "distance": self.run.config.loss.distance,
            "engine": self.engine_name,
            "index": None if self.index is None else {
                "kind": self.index.settings.kind, "count": len(self.index),
                "calibrated": self.index.calibration is not None,
            },
            "verification_threshold": self.verification_threshold,
            "classes": list(config.class_names) or None,
        }  # fmt: skip


def share_cores(workers: int) -> int:
    """Model threads of each worker process: the machine's cores shared out, so that workers
    x threads <= cores (two PyTorch processes on 2 cores, each spinning 2 threads, ran 9x
    slower than one alone)."""
    return max(1, machine_cores() // max(1, workers))


def hold_threads(threads: int) -> None:
    """Hold this process's model threads to `threads`: PyTorch, FAISS's OpenMP, and every
    BLAS and OpenMP pool loaded (numpy's, FAISS's own OpenBLAS, PyTorch's), which would
    otherwise keep a thread per core spinning between calls. For a service's process."""
    torch.set_num_threads(threads)
    faiss().omp_set_num_threads(threads)
    threadpool_limits(threads)


def load_service_model(
    run_dir: str | Path,
    index_dir: str | Path | None = None,
    engine: str = "onnx",
    threads: int = 1,
    force: bool = False,
) -> ServiceModel:
    """Open a run for serving: its best model on `engine` (exporting `model.onnx` first when
    the run has none; PyTorch when ONNX Runtime is not installed), its index (`index_dir`, else
    `RUN_DIR/index` when there is one) and its verification threshold from `metrics.json`.

    Raises:
        FileNotFoundError: no run, checkpoint, or (given) index.
        ValueError: an unknown engine, an index built by another model (unless `force`).
    """
    run = RunDir.open(run_dir)
    embedder = Embedder.from_pretrained(run.path)
    engine_model, name = _engine(run, embedder, engine, threads)
    folder = Path(index_dir) if index_dir else run.index
    index = None
    if index_dir is not None or (folder / MANIFEST).is_file():
        index = EmbeddingIndex.load(folder, checkpoint_sha256(run.path), force)
        check_fits(folder, index.dim, index.normalized, embedder.embedding_dim,
                   embedder.config.normalize)  # fmt: skip
    threshold = (run.read_metrics().get("verification") or {}).get("threshold")
    return ServiceModel(run, embedder, engine_model, name, index, folder if index else None,
                        threshold)  # fmt: skip


def _engine(run: RunDir, embedder: Embedder, engine: str, threads: int) -> tuple[Any, str]:
    if engine == "torch":
        return embedder, "torch"
    if engine != "onnx":
        raise ValueError(f"unknown engine {engine!r}; expected onnx or torch")
    from tripletlab.export.onnx import export_run_onnx
    from tripletlab.models.engines import OnnxEmbedder, current_onnx, require_onnx

    try:
        require_onnx()
    except ValueError as error:
        log.warning("%s: serving with PyTorch", error)
        return embedder, "torch"
    exported = current_onnx(run.path, threads=threads, spin=False)
    if exported is None:
        log.warning("%s: model.onnx is missing or not of the best checkpoint: exporting it",
                    run.path)  # fmt: skip
        export_run_onnx(run.path)
        exported = OnnxEmbedder(run.onnx_file(), threads=threads, spin=False)
    return exported, "onnx"
