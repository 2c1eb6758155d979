"""Embeddings per second of the default network: PyTorch eager (reference) against ONNX Runtime
(float32 and int8), measured in the same run on MNIST test images.

Trains nothing: a freshly initialised `seed_cnn` Embedder has the same cost as a trained one.
Run: `make bench` or `python benchmarks/inference.py`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import show

from tripletlab import Embedder
from tripletlab.data import load_mnist
from tripletlab.evaluation import measure_throughput
from tripletlab.export.onnx import OnnxEmbedder, export_onnx, quantize_int8


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    torch.manual_seed(0)
    embedder = Embedder().eval()
    images = load_mnist("test").images
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(embedder, Path(folder) / "model.onnx")
        engines = {
            "PyTorch eager (reference)": embedder,
            "ONNX Runtime float32": OnnxEmbedder(path),
            "ONNX Runtime int8 (linear layers)": OnnxEmbedder(
                quantize_int8(path, Path(folder) / "q.onnx")
            ),
        }
        rows = []
        for batch_size in (32, 256):
            reference = None
            for name, engine in engines.items():
                speed = measure_throughput(engine, images, batch_size, min_seconds=2.0)
                per_second = speed["embeddings_per_second"]
                reference = reference or per_second
                rows.append(
                    [
                        batch_size,
                        name,
                        per_second,
                        speed["ms_per_batch"],
                        f"{per_second / reference:.2f}x",
                    ]
                )
    show(
        f"seed_cnn inference on {torch.get_num_threads()} threads (goal: 20,000 / s with ONNX)",
        ["batch", "engine", "embeddings / s", "ms / batch", "vs eager"],
        rows,
    )


if __name__ == "__main__":
    main()
