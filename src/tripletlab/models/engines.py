"""Embedding engines: the PyTorch `Embedder` itself, or its ONNX export run by ONNX Runtime.

This module owns ONNX Runtime (sessions, int8 quantization). The `onnx`, `onnxscript` and
`onnxruntime` packages are the `onnx` extra (`pip install tripletlab[onnx]`); they are imported
only when asked for (the exporter, `tripletlab.export.onnx`, uses torch.onnx).
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tripletlab.models.embedder import Embedder
from tripletlab.runs import RunDir, checkpoint_sha256

Engine = Literal["torch", "onnx"]
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
PROBABILITIES_NAME = "probabilities"  # a second output where the model has a classifier
log = logging.getLogger(__name__)
# Metadata of an export: the SHA-256 of the checkpoint weights it was made from.
CHECKPOINT_KEY = "tripletlab.checkpoint_sha256"


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
    """Embeds uint8 images with ONNX Runtime on the CPU; same interface as `Embedder.embed`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a file ONNX Runtime cannot read (damaged, or not ONNX).
    """

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
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])  # fmt: skip
        except Exception as error:  # ONNX Runtime's own types (InvalidProtobuf, Fail, ...)
            reason = str(error).splitlines()[0]
            raise ValueError(f"{path} is not a model ONNX Runtime can run ({reason}); "
                             "export it again") from None  # fmt: skip
        self.path = path
        self.image_shape = tuple(self.session.get_inputs()[0].shape[1:])  # (H, W[, C])
        self.dim = self.session.get_outputs()[0].shape[1]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.checkpoint_sha256: str | None = metadata.get(CHECKPOINT_KEY)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """One batch: uint8 (N, H, W[, C]) -> float32 (N, D)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: self._checked(images)})[0]

    def _checked(self, images: np.ndarray) -> np.ndarray:
        """Contiguous images of the model's shape; grey images may come as (N, H, W, 1)."""
        images = np.asarray(images)
        if images.ndim == len(self.image_shape) + 2 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.shape[1:] != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ValueError(f"the ONNX model takes images (N, {expected}), got {images.shape}")
        return np.ascontiguousarray(images)

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
        images = self._checked(images)
        parts = [self.session.run([PROBABILITIES_NAME], {INPUT_NAME: images[s : s + batch_size]})[0]
                 for s in range(0, len(images), batch_size)]  # fmt: skip
        classes = self.session.get_outputs()[1].shape[1]
        return np.concatenate(parts) if parts else np.zeros((0, classes), dtype=np.float32)

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
        out = np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)
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

    target = Path(target)
    temp = target.with_name(f".{target.name}.tmp")
    try:
        quantize_dynamic(str(source), str(temp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])  # fmt: skip
        os.replace(temp, target)  # a failed quantization leaves an earlier one whole
    finally:
        temp.unlink(missing_ok=True)
    return target


def select_engine(embedder: Embedder, run_dir: Path, engine: Engine) -> Embedder | OnnxEmbedder:
    """`embedder` itself for "torch", the run's `model.onnx` in ONNX Runtime for "onnx".

    Raises:
        FileNotFoundError: no `model.onnx`.
        ValueError: any other engine name; a `model.onnx` ONNX Runtime cannot read, or one
            exported from another checkpoint (`check_exported_from`).
    """
    if engine == "torch":
        return embedder
    if engine == "onnx":
        exported = OnnxEmbedder(RunDir(run_dir).onnx_file())
        check_exported_from(exported, run_dir)
        return exported
    raise ValueError(f"unknown engine {engine!r}; expected torch or onnx")


def current_onnx(
    run_dir: Path, threads: int | None = None, spin: bool = True
) -> OnnxEmbedder | None:
    """The run's ONNX model in ONNX Runtime when it can stand for the best checkpoint; None
    when it is missing, unreadable or exported from another checkpoint (export it again)."""
    try:
        exported = OnnxEmbedder(RunDir(run_dir).onnx_file(), threads, spin)
        check_exported_from(exported, run_dir)
    except (OSError, ValueError):
        return None
    return exported


def check_exported_from(exported: OnnxEmbedder, run_dir: Path) -> None:
    """Refuse a run's ONNX model exported from another checkpoint than its best one (the run
    trained on, or resumed, since): its vectors would not be the index's or PyTorch's. An
    export that does not say (made before exports recorded it) is used, with a warning.

    Raises:
        ValueError: saying how to export it again.
    """
    again = f"export it again: tripletlab export onnx {shlex.quote(str(run_dir))}"
    if exported.checkpoint_sha256 is None:  # exported before 2026-12-02: used as it is
        log.warning("%s does not say which checkpoint it was exported from; if the run trained "
                    "since, %s", exported.path, again)  # fmt: skip
        return
    if exported.checkpoint_sha256 != checkpoint_sha256(run_dir):
        raise ValueError(f"{exported.path} was exported from another checkpoint than the run's "
                         f"best (it trained since); {again}")  # fmt: skip
