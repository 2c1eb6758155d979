"""Embedding engines: the PyTorch `Embedder` itself, or its ONNX export run by ONNX Runtime.

This module owns ONNX Runtime (sessions, int8 quantization). The `onnx`, `onnxscript` and
`onnxruntime` packages are the `onnx` extra (`pip install tripletlab[onnx]`); they are imported
only when asked for (the exporter, `tripletlab.export.onnx`, uses torch.onnx).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tripletlab.models.embedder import Embedder
from tripletlab.runs import RunDir

Engine = Literal["torch", "onnx"]
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
PROBABILITIES_NAME = "probabilities"  # a second output where the model has a classifier


def require_onnx() -> None:
    """Raise a `ValueError` naming the extra to install when an ONNX package is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"ONNX needs the onnx extra: pip install 'tripletlab[onnx]' ({error.name} is missing)"
        ) from error


class OnnxEmbedder:
    """Embeds uint8 images with ONNX Runtime on the CPU; same interface as `Embedder.embed`."""

    def __init__(self, path: Path, threads: int | None = None, spin: bool = True) -> None:
        require_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}; run `tripletlab export onnx` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        if not spin:  # a service: idle threads sleep instead of spinning between requests
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """One batch: uint8 (N, H, W[, C]) -> float32 (N, D)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0]

    @property
    def has_classifier(self) -> bool:
        """Whether the exported model also gives class probabilities."""
        return PROBABILITIES_NAME in {output.name for output in self.session.get_outputs()}

    def classify(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> class probabilities (N, C).

        Raises:
            ValueError: the model was exported without a classifier.
        """
        if not self.has_classifier:
            raise ValueError(
                f"{self.path} has no {PROBABILITIES_NAME} output: its run has no classifier, "
                "or it was exported before classifiers were (export it again)"
            )
        images = np.ascontiguousarray(images)
        parts = [self.session.run([PROBABILITIES_NAME], {INPUT_NAME: images[s : s + batch_size]})[0]
                 for s in range(0, len(images), batch_size)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """All images, in batches: uint8 (N, H, W[, C]) -> float32 (N, D).

        Raises:
            ValueError: images that are not uint8, a batch size below 1, or NaN / Inf out.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"the ONNX model takes uint8 images (0..255), got {images.dtype}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        parts = [self(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
        out = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        if not np.isfinite(out).all():
            raise ValueError("the ONNX model gives NaN or Inf embeddings")
        return out


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the linear layers' weights (most of the parameters).

    Convolutions stay float32: ONNX Runtime's integer convolution ran about 10x slower than
    the float one on this machine's CPU.
    """
    require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])  # fmt: skip
    return Path(target)


def select_engine(embedder: Embedder, run_dir: Path, engine: Engine) -> Embedder | OnnxEmbedder:
    """`embedder` itself for "torch", the run's `model.onnx` in ONNX Runtime for "onnx".

    Raises:
        ValueError: any other engine name.
    """
    if engine == "torch":
        return embedder
    if engine == "onnx":
        return OnnxEmbedder(RunDir(run_dir).onnx_file())
    raise ValueError(f"unknown engine {engine!r}; expected torch or onnx")
