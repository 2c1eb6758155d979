"""`torch.compile` against `seed_cnn`'s fused CPU path: batch-32 training, images per second.

Seven ways to run the default recipe's training step (`tripletlab train`: seed_cnn, semi-hard
loss, Adam), each in a fresh process, rounds alternating so that the machine's changes of
speed touch all of them alike:
- fused (the default): the first layer and each ReLU + dropout in one compiled numba pass;
- layer by layer (`SeedCNNBackbone(fused=False)`): PyTorch's own layers, eager;
- `torch.compile` of the layer-by-layer model, default mode and "max-autotune-no-cudagraphs"
  (compilation is timed apart, in the warm-up steps);
- the same three with PyTorch's `nn.Dropout` in place of `FastDropout` ("torch dropout"),
  whose numba masks `torch.compile` cannot trace: the best case for the compiler.
Only the model is compiled; the loss, backward and optimizer step run as they do in training.
Run: `python benchmarks/compile.py [--rounds 2] [--steps 300]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import in_fresh_process, show
from torch import nn

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import Trainer

WAYS = (
    "fused",
    "layer by layer",
    "compile default",
    "compile max-autotune-no-cudagraphs",
    "layer by layer, torch dropout",
    "compile default, torch dropout",
    "compile max-autotune-no-cudagraphs, torch dropout",
)
BATCH = 32


def measure(way: str, steps: int) -> dict[str, float]:
    """Compile (if asked) and warm up, then time `steps` training steps of batch 32."""
    trainer = Trainer(merge(RunConfig(), {"train": {"batch_size": BATCH}}))
    model = trainer.model.train()
    model.backbone.fused = way == "fused"
    way, _, dropout = way.partition(", ")
    if dropout:
        model.backbone.drop1, model.backbone.drop2 = nn.Dropout(0.3), nn.Dropout(0.3)
    if way.startswith("compile"):
        mode = way.removeprefix("compile ")
        model.backbone = torch.compile(model.backbone, mode=None if mode == "default" else mode)
    train = load_mnist("train")
    order = np.random.default_rng(0).permutation(len(train.labels))
    images = torch.from_numpy(train.images[order])
    labels = torch.from_numpy(train.labels[order]).long()
    batch = torch.arange(BATCH)

    def step(i: int) -> None:
        chunk = slice(i * BATCH, (i + 1) * BATCH)
        trainer.train_step(images[chunk], labels[chunk], batch)

    start = time.perf_counter()
    for i in range(20):  # the first steps compile (torch.compile) and warm up
        step(i)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(20, 20 + steps):
        step(i)
    return {"images_per_second": steps * BATCH / (time.perf_counter() - start),
            "warmup_seconds": warmup}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            results[way].append(in_fresh_process("compile", "measure", way, args.steps))
    reference = np.median([r["images_per_second"] for r in results["fused"]])
    rows = []
    for way, runs in results.items():
        speeds = [r["images_per_second"] for r in runs]
        rows.append([way, " / ".join(f"{s:,.0f}" for s in speeds),
                     f"{np.median(speeds) / reference:.2f}x",
                     " / ".join(f"{r['warmup_seconds']:.1f}" for r in runs)])  # fmt: skip
    show(
        f"seed_cnn training step, batch {BATCH}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps after 20 warm-up steps, {args.rounds} rounds alternating",
        ["way", "images / s (each round)", "vs fused (median)", "warm-up s (incl. compile)"],
        rows,
    )


if __name__ == "__main__":
    main()
