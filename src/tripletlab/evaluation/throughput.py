"""Embeddings per second of an `Embedder` at inference."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.evaluation.evaluate import load_run
from tripletlab.models import Embedder
from tripletlab.models.engines import select_engine
from tripletlab.utils.allocator import tune_malloc


@torch.inference_mode()
def measure_throughput(
    embedder: Embedder | Any,
    images: np.ndarray,
    batch_size: int = 256,
    min_seconds: float = 2.0,
    warmup_batches: int = 3,
) -> dict[str, Any]:
    """Time forward passes in eval mode after a warm-up, for at least `min_seconds`.

    Batches cycle through `images`; the clock is `time.perf_counter`. `embedder` is an
    `Embedder` (PyTorch eager) or any callable batch -> embeddings (e.g. `OnnxEmbedder`).

    Returns:
        Dict with `embeddings_per_second`, `ms_per_batch`, `batch_size`, `batches`, `seconds`,
        `threads`.
    """
    if batch_size < 1 or len(images) == 0:
        raise ValueError("need a batch size >= 1 and at least one image")
    if not math.isfinite(min_seconds) or min_seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {min_seconds}")
    tune_malloc()  # as in training: no page faults for each batch's activations
    is_torch = isinstance(embedder, torch.nn.Module)
    if is_torch:
        embedder.eval()
    data = torch.as_tensor(images) if is_torch else np.ascontiguousarray(images)
    starts = list(range(0, max(1, len(data) - batch_size + 1), batch_size))
    batches = [data[s : s + batch_size] for s in starts]
    for i in range(warmup_batches):
        embedder(batches[i % len(batches)])
    count, done = 0, 0
    start = time.perf_counter()
    while True:
        batch = batches[done % len(batches)]
        embedder(batch)
        count += len(batch)
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return {
        "embeddings_per_second": count / elapsed,
        "ms_per_batch": 1000.0 * elapsed / done,
        "batch_size": len(batches[0]),
        "batches": done,
        "seconds": elapsed,
        "threads": torch.get_num_threads(),
        "engine": "PyTorch eager" if is_torch else "ONNX Runtime",
    }


def benchmark_run(
    run_dir: Path, batch_size: int = 256, min_seconds: float = 2.0, engine: str = "torch"
) -> dict[str, Any]:
    """Throughput of a run's best checkpoint on its test images; also saved to `metrics.json`
    as `embeddings_per_second` (`onnx_embeddings_per_second` for ONNX Runtime), with the
    settings under `throughput` (`onnx_throughput`)."""
    run, data, embedder = load_run(run_dir)
    runner = select_engine(embedder, run.path, engine)
    result = measure_throughput(runner, data.test.images, batch_size, min_seconds)
    prefix = "onnx_" if engine == "onnx" else ""
    run.write_metrics({f"{prefix}embeddings_per_second": result["embeddings_per_second"],
                       f"{prefix}throughput": result})  # fmt: skip
    return result
