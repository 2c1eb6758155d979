"""Named recipes, applied over the defaults and under a YAML file and flags."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The triplet-loss MNIST project: its shared CNN's raw 128-d ReLU output, explicit random
    # triplets, squared L2, margin 1, batch 32, 2 epochs, Adam.
    "spike": {
        "model": {"backbone": "spike_cnn", "head": False, "normalize": False},
        "loss": {"margin": 1.0, "distance": "squared-L2"},
        "train": {"mode": "triplets", "triplets": "random", "batch_size": 32, "epochs": 2,
                  "lr": 1e-3},
    },
    # Time to quality on 2 CPU cores: the light spike_cnn with head and L2 norm, PK batches,
    # cosine decay, 4 epochs, test-time views (one-pixel shifts). MNIST test set, seeds 0 / 1 /
    # 2 (2026-12-01): Precision@1 0.9923 / 0.9919 / 0.9909, MAP@R 0.9837 / 0.9852 / 0.9831,
    # 21 s to 23 s of training (3 epochs without the views gave 0.9894 / 0.9904 / 0.9897).
    "fast": {
        "model": {"backbone": "spike_cnn", "embedding_dim": 64, "tta_shift": 1},
        "loss": {"name": "semihard", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 4,
                  "lr": 3e-3, "schedule": "cosine"},
    },
    # The most accurate recipe found: resnet_small, rotations and shifts inside the model, PK
    # batches, cosine decay, a moving average of the weights, test-time views (one-pixel
    # shifts), 6 epochs. MNIST test set, seeds 0 / 1 / 2 (2026-12-01): Precision@1 0.9956 /
    # 0.9959 / 0.9950, MAP@R 0.9917 / 0.9917 / 0.9910, 111 s to 116 s of training in a fast
    # machine state (4 epochs: 0.9942 / 0.9956 / 0.9954, MAP@R 0.9880 / 0.9888 / 0.9905).
    "accurate": {
        "model": {"backbone": "resnet_small", "embedding_dim": 64, "rotation": 10.0,
                  "translate": 0.1, "tta_shift": 1},
        "loss": {"name": "semihard", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 6,
                  "lr": 3e-3, "schedule": "cosine", "ema": 0.998},
    },
    # Fashion-MNIST, its data set unless --dataset names another (images whose mirror image is
    # the same kind): `accurate` with flips instead of rotations, a 128-d embedding, semi-hard +
    # cross-entropy, 20 epochs (24 took about 490 s in a fast machine state, over 600 s in a
    # slow one), the mirror image among the test-time views. Measured in
    # benchmarks/quality.py (docs/quality.md).
    "fashion": {
        "data": {"dataset": "fashion-mnist"},
        "model": {"backbone": "resnet_small", "embedding_dim": 128, "flip": True,
                  "translate": 0.1, "tta_shift": 1, "tta_flip": True},
        "loss": {"name": "semihard+ce", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 20,
                  "lr": 3e-3, "schedule": "cosine", "ema": 0.998},
    },
    # Classes never seen in training (`--train-classes`): the hard loss at margin 0.2, a 128-d
    # embedding, only 4 epochs (longer fits the seen classes), flips and rotations, test-time
    # views shifted by 2 pixels (Fashion-MNIST 0-4 -> 5-9: MAP@R 0.36 without views, 0.40 with
    # 1-pixel shifts, 0.42 with 2). Measured in benchmarks/quality.py (docs/quality.md).
    "unseen": {
        "model": {"backbone": "resnet_small", "embedding_dim": 128, "flip": True,
                  "rotation": 10.0, "translate": 0.1, "tta_shift": 2},
        "loss": {"name": "hard", "margin": 0.2},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 4,
                  "lr": 3e-3, "schedule": "cosine", "ema": 0.998},
    },
    # The Keras transfer-learning guide: train a new head on a frozen backbone, then unfreeze
    # everything and fine-tune at a very low learning rate (BatchNorm stays in inference mode).
    "transfer": {
        "phases": [
            {"epochs": 10, "lr": 1e-3, "optimizer": "adam", "freeze": "backbone"},
            {"epochs": 10, "lr": 1e-5, "optimizer": "adam", "freeze": "none"},
        ],
    },
}  # fmt: skip


def preset(name: str) -> dict[str, Any]:
    """The overrides of preset `name`.

    Raises:
        ValueError: unknown preset (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
