"""Training throughput of the tutorial network (seed_cnn, semi-hard, Adam), images per second.

The reference is the default eager training step at batch 32, measured in the same run; the
other rows show how throughput grows with the batch size. Run: `make bench`.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from _common import show

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import Trainer


def images_per_second(
    batch_size: int, steps: int, images: torch.Tensor, labels: torch.Tensor
) -> float:
    config = merge(RunConfig(), {"train": {"batch_size": batch_size}})
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, folder)
        trainer.model.train()
        order = np.random.default_rng(0).permutation(len(images))
        batches = [
            torch.from_numpy(order[i * batch_size : (i + 1) * batch_size]) for i in range(steps + 5)
        ]
        for batch in batches[:5]:  # warm-up
            trainer.train_step(images, labels, batch)
        start = time.perf_counter()
        for batch in batches[5:]:
            trainer.train_step(images, labels, batch)
        return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    train = load_mnist("train")
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    reference = images_per_second(32, 300, images, labels)
    rows = [[32, reference, "1.00x"]]
    for batch_size in (128, 512):
        speed = images_per_second(batch_size, max(30, 9600 // batch_size), images, labels)
        rows.append([batch_size, speed, f"{speed / reference:.2f}x"])
    show(
        f"seed_cnn training, semi-hard loss, {torch.get_num_threads()} threads "
        "(goal: 2,000 images / s at batch 32)",
        ["batch", "images / s", "vs batch 32"],
        rows,
    )


if __name__ == "__main__":
    main()
