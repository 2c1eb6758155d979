"""ONNX export of an `Embedder` (uint8 images in, rescaling inside), checked against PyTorch.

Running the exported model is `tripletlab.models.engines.OnnxEmbedder` (ONNX Runtime).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.evaluation import load_run, retrieval_metrics
from tripletlab.models import Embedder
from tripletlab.models.embedder import probabilities
from tripletlab.models.engines import (
    CHECKPOINT_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    PROBABILITIES_NAME,
    OnnxEmbedder,
    quantize_int8,
    require_onnx,
)
from tripletlab.runs import checkpoint_sha256, quantized_path


def _example_input(embedder: Embedder, batch: int = 2) -> torch.Tensor:
    config = embedder.config
    shape = (batch, *config.image_size) + ((config.channels,) if config.channels > 1 else ())
    return torch.zeros(shape, dtype=torch.uint8)


class _WithProbabilities(torch.nn.Module):
    """An embedder with a classifier, as one graph: images -> (embeddings, probabilities)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings, logits = self.embedder.outputs(images)
        return embeddings, probabilities(logits)


def export_onnx(
    embedder: Embedder, path: Path, opset: int = 18, checkpoint_sha256: str | None = None
) -> Path:
    """Write `embedder` (eval mode) as an ONNX model: uint8 `images` (N, H, W[, C]) with a
    dynamic batch size -> float32 `embeddings` (N, D), and `probabilities` (N, C) in the order
    of `config.classes` where the model has a classifier. Input scaling is inside the graph.
    `checkpoint_sha256` (of the weights exported) goes in the model's metadata."""
    require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    embedder = embedder.eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    temp = path.with_name(f".{path.name}.tmp")
    module: torch.nn.Module = embedder
    outputs = [OUTPUT_NAME]
    if embedder.classifier is not None:
        module, outputs = _WithProbabilities(embedder).eval(), [OUTPUT_NAME, PROBABILITIES_NAME]
    # The exporter's own notes, nothing a user can act on: which torchvision operators it skips
    # (torchvision is not a dependency) and a deprecated pytree class inside torch.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                module, (_example_input(embedder),), dynamo=True, opset_version=opset,
                input_names=[INPUT_NAME], output_names=outputs,
                dynamic_shapes={"images": {0: batch}}, verbose=False,
            )  # fmt: skip
    finally:
        registration.setLevel(level)
    if checkpoint_sha256 is not None:
        program.model.metadata_props[CHECKPOINT_KEY] = checkpoint_sha256
    program.save(str(temp))
    os.replace(temp, path)
    return path


def check_parity(embedder: Embedder, onnx_embedder: OnnxEmbedder, images: np.ndarray) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime embeddings of `images`."""
    expected = embedder.embed(images)
    return float(np.abs(onnx_embedder.embed(images) - expected).max())


def _largest_difference(embedder: Embedder, path: Path, images: np.ndarray) -> float:
    """Largest absolute difference between PyTorch and the ONNX model at `path` on `images`,
    embeddings and (where the model has them) class probabilities."""
    exported = OnnxEmbedder(path)
    difference = check_parity(embedder, exported, images)
    if exported.has_classifier:
        expected = embedder.embed_and_classify(images)[1]
        difference = max(difference, float(np.abs(exported.classify(images) - expected).max()))
    return difference


def export_run_onnx(
    run_dir: Path, out: Path | None = None, quantize: str | None = None, tolerance: float = 1e-5
) -> dict[str, Any]:
    """Export a run's best checkpoint to `RUN_DIR/model.onnx` and check it on up to 512 of its
    test images.

    With `quantize="int8"`, also writes `model.int8.onnx` and reports the Precision@1 it costs
    on the test set.

    Raises:
        ValueError: the exported model differs from PyTorch by more than `tolerance`.
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"unknown quantization {quantize!r}; expected int8")
    run, data, embedder = load_run(run_dir)
    path = Path(out) if out else run.onnx_file()
    # Checked before it takes the place of an earlier export: a refused one replaces nothing
    # (a hidden .tmp, so a killed export is tidied like any killed write in a run folder).
    unchecked = export_onnx(embedder, path.with_name(f".{path.name}.unchecked.tmp"),
                            checkpoint_sha256=checkpoint_sha256(run.path))  # fmt: skip
    sample = data.test.images[:512]
    try:
        difference = _largest_difference(embedder, unchecked, sample)
        if difference > tolerance:
            raise ValueError(
                f"ONNX model differs from PyTorch by {difference:.2e} > {tolerance:.0e}; "
                f"{path} was not written"
            )
        os.replace(unchecked, path)
    finally:
        unchecked.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "path": str(path),
        "max_abs_difference": difference,
        "num_checked": len(sample),
    }
    if quantize is not None:
        quantized = quantize_int8(path, quantized_path(path, quantize))
        full = retrieval_metrics(OnnxEmbedder(path).embed(data.test.images), data.test.labels)
        small = retrieval_metrics(OnnxEmbedder(quantized).embed(data.test.images), data.test.labels)
        result.update(
            int8_path=str(quantized),
            precision_at_1=full["precision_at_1"],
            int8_precision_at_1=small["precision_at_1"],
            int8_precision_at_1_loss=full["precision_at_1"] - small["precision_at_1"],
        )
    return result
