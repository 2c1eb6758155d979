"""The values config keys accept: the modes as `Literal` types (checked by
`tripletlab.config.fields`), and constants the sections' defaults use."""

from __future__ import annotations

from typing import Literal, get_args

# Images per forward pass when embedding. Small enough that each activation stays under
# glibc's 32 MiB mmap limit (larger blocks are mapped and page-faulted in every pass): on 2 CPU
# cores 60,000 MNIST images took 4.1-4.5 s at 128 against 8.7-9.4 s at 1024 (`seed_cnn`), the
# default run's 70,000 evaluation embeddings and metrics 12-14 s against 17-18 s.
EMBED_BATCH_SIZE = 128

# Triplet losses, cross-entropy over a classifier on the embedding, or a triplet loss plus
# `ce_weight` times cross-entropy.
LossName = Literal[
    "semihard", "hard", "batch-all", "cross-entropy", "semihard+ce", "hard+ce", "batch-all+ce"
]
Distance = Literal["L2", "squared-L2", "angular"]
Mode = Literal["online", "triplets"]
TripletRule = Literal["random", "semihard", "hard"]
SamplerName = Literal["shuffle", "pk"]
Schedule = Literal["constant", "cosine"]
OptimizerName = Literal["adam", "sgd"]
# Phase freezing: "none", "backbone", or "until:<layer>" (the backbone's layers before that
# direct child frozen, that one and those after it trained: the guide's "unfreeze the top").
Freeze = str
Scaling = Literal["auto", "unit", "symmetric", "mean-std"]
Monitor = Literal["auto", "val_map_at_r", "val_precision_at_1", "val_loss", "val_accuracy", "loss"]
SplitOrder = Literal["per-class", "global"]
Precision = Literal["float32", "bfloat16"]

LOSS_NAMES: tuple[str, ...] = get_args(LossName)
# ImageNet's per-channel statistics, what torchvision's and timm's weights were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DISTANCES: tuple[str, ...] = get_args(Distance)
TRIPLET_RULES: tuple[str, ...] = get_args(TripletRule)
