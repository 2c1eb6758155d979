"""Training throughput of the tutorial network (semi-hard loss, Adam), images per second.

The reference is the obvious PyTorch eager port of the tutorial's model, measured in the same
run: Conv2d(padding="same") -> ReLU -> MaxPool -> nn.Dropout, twice, then Dense and L2
normalisation, the same loss and optimizer, in a fresh process (so glibc's malloc starts
untuned, as in a user's own script). tripletlab's `Trainer` trains the same network with the
same loss (pooling before ReLU is exact; its dropout masks are drawn differently, with p
rounded to 0.300003) and tunes malloc.
Run: `make bench` or `python benchmarks/training.py [--steps 600]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import in_fresh_process, show
from torch import nn
from torch.nn import functional

from tripletlab.config import LossConfig, RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.losses import build_loss
from tripletlab.training import Trainer

STEPS_AT_32 = 600
# (steps / (batch / 32) + 5 warm-up) * batch images fit in MNIST's 60,000 at 32, 128 and 512.
MAX_STEPS_AT_32 = 1_700


def plain_step() -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step of the straightforward eager port of the tutorial network."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Conv2d(64, 32, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = build_loss(LossConfig(name="semihard", margin=1.0))

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad()
        x = images.float().div(255).unsqueeze(1)
        loss = loss_fn(functional.normalize(model(x), dim=1), labels)
        loss.backward()
        optimizer.step()

    return step


def tripletlab_step(batch_size: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One step of tripletlab's default recipe (`tripletlab train`) at `batch_size`."""
    trainer = Trainer(merge(RunConfig(), {"train": {"batch_size": batch_size}}))
    trainer.model.train()
    everything = torch.arange(batch_size)
    return lambda images, labels: trainer.train_step(images, labels, everything)


def images_per_second(kind: str, batch_size: int, steps: int) -> float:
    """Throughput over `steps` steps after 5 warm-up steps, on real MNIST batches."""
    train = load_mnist("train")
    order = np.random.default_rng(0).permutation(len(train.labels))[: (steps + 5) * batch_size]
    images = torch.from_numpy(train.images[order]).view(-1, batch_size, 28, 28)
    labels = torch.from_numpy(train.labels[order]).long().view(-1, batch_size)
    step = plain_step() if kind == "plain" else tripletlab_step(batch_size)
    for i in range(5):
        step(images[i], labels[i])
    start = time.perf_counter()
    for i in range(5, steps + 5):
        step(images[i], labels[i])
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=STEPS_AT_32,
        help="timed steps at batch 32 (fewer at larger batches: as many images)",
    )  # fmt: skip
    args = parser.parse_args()
    if not 1 <= args.steps <= MAX_STEPS_AT_32:
        parser.error(f"--steps must be 1 to {MAX_STEPS_AT_32}: every timed batch is new MNIST "
                     "training images (60,000 at most, at each batch size)")  # fmt: skip
    rows = []
    reference = in_fresh_process("training", "images_per_second", "plain", 32, args.steps)
    rows.append(["plain eager port", 32, reference, "1.00x"])
    for batch_size in (32, 128, 512):
        steps = max(1, args.steps * 32 // batch_size)
        speed = in_fresh_process("training", "images_per_second", "tripletlab", batch_size, steps)
        rows.append(["tripletlab Trainer", batch_size, speed, f"{speed / reference:.2f}x"])
    show(
        f"tutorial network training, semi-hard loss, {torch.get_num_threads()} threads, "
        f"{args.steps} steps at batch 32 (goal: 2,000 images / s at batch 32)",
        ["training", "batch", "images / s", "vs plain at 32"],
        rows,
    )


if __name__ == "__main__":
    main()
