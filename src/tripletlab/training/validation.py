"""The validation loss and accuracy of an epoch, from the validation embeddings already made
for the retrieval metrics, and the metric that picks the best epoch (and stops a phase).

The loss is the training loss on the validation images: an in-batch triplet loss over batches
of the training batch size in one fixed shuffled order; explicit triplets' margin loss over one
fixed set of random triplets (each validation image an anchor once, as the per-class report
draws them); cross-entropy over all of them. The
order and the triplets depend only on the seed, so epochs compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tripletlab.config import RunConfig
from tripletlab.data import ImageSet
from tripletlab.evaluation.per_class import class_triplets
from tripletlab.losses import ClassificationLoss, triplet_gaps

# The monitored metrics where lower is better.
LOWER_IS_BETTER = ("loss", "val_loss")


def validation_scores(
    config: RunConfig,
    loss_fn: nn.Module,
    embeddings: np.ndarray,
    probabilities: np.ndarray | None,
    labels: np.ndarray,
) -> dict[str, float]:
    """`val_loss` and, with a classifier, `val_accuracy` (both over the validation images of
    the classifier's classes only).

    Args:
        embeddings: float32 (N, D) of the validation images (single views).
        probabilities: float32 (N, C) in the order of `config.model.classes`, or None.
        labels: int (N,).
    """
    classifier = loss_fn if isinstance(loss_fn, ClassificationLoss) else None
    triplet = classifier.triplet if classifier is not None else loss_fn
    total, scores = 0.0, {}
    with torch.no_grad():
        if triplet is not None:
            total += _triplet_loss(config, triplet, embeddings, labels)
        # Only the images of classes the classifier has an output for (a validation part may
        # hold classes the training part lacks).
        known = np.isin(labels, classifier.classes) if classifier is not None else labels[:0]
        if probabilities is not None and known.any():
            target = classifier.targets(torch.from_numpy(labels[known])).numpy()
            rows = probabilities[known]
            picked = rows[np.arange(len(target)), target].astype(np.float64)
            cross_entropy = float(-np.log(np.clip(picked, 1e-12, None)).mean())
            total += cross_entropy * (classifier.weight if triplet is not None else 1.0)
            scores["val_accuracy"] = float((rows.argmax(1) == target).mean())
    return {"val_loss": total, **scores}


def _triplet_loss(
    config: RunConfig, loss_fn: nn.Module, embeddings: np.ndarray, labels: np.ndarray
) -> float:
    vectors = torch.from_numpy(embeddings)
    if config.train.mode == "triplets":  # (N, 3D) of (anchor, positive, negative)
        triplets = torch.from_numpy(class_triplets(labels, config.train.seed))
        if not len(triplets):
            return 0.0
        return float(loss_fn(torch.cat([vectors[triplets[:, i]] for i in range(3)], dim=1)))
    order = np.random.default_rng(config.train.seed).permutation(len(labels))
    size = config.train.batch_size
    total, count = 0.0, 0
    for start in range(0, len(order), size):
        batch = order[start : start + size]
        if len(batch) < 2:
            continue
        total += float(loss_fn(vectors[batch], torch.from_numpy(labels[batch]))) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def triplet_values(
    config: RunConfig, embeddings: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-triplet values of the validation images (each an anchor once, with a random
    positive and negative, as the per-class report draws them), for histograms: `diff`, the
    triplet-loss MNIST project's d(a,p)^2 - d(a,n)^2, and `loss`, max(d(a,p) - d(a,n) + margin,
    0) in the run's distance. Both (T,) float32; empty without a class of two images."""
    triplets = torch.from_numpy(class_triplets(labels, config.train.seed))
    if not len(triplets):
        empty = np.zeros(0, dtype=np.float32)
        return {"diff": empty, "loss": empty}
    vectors = torch.from_numpy(embeddings).double()
    joined = torch.cat([vectors[triplets[:, i]] for i in range(3)], dim=1)
    diff = triplet_gaps(joined, "squared-L2")
    loss = (triplet_gaps(joined, config.loss.distance) + config.loss.margin).clamp_min(0.0)
    return {"diff": diff.float().numpy(), "loss": loss.float().numpy()}


def resolve_monitor(config: RunConfig, validating: bool) -> str:
    """The metric `config.train.monitor` means: "auto" is val_accuracy for cross-entropy
    alone, val_map_at_r otherwise, and the training loss without validation images.

    Raises:
        ValueError: a validation metric asked for without validation images.
    """
    monitor = config.train.monitor
    if monitor == "auto":
        if not validating:
            return "loss"
        return "val_accuracy" if config.loss.name == "cross-entropy" else "val_map_at_r"
    if monitor.startswith("val_") and not validating:
        raise ValueError(f"train.monitor {monitor} needs validation images; this run has none")
    return monitor


def improves(logs: dict[str, Any], best: dict[str, Any] | None, monitor: str) -> bool:
    """Whether `logs` beat `best` (None: nothing yet) on `monitor`; a tie keeps the earlier."""
    if best is None:
        return True
    if monitor not in logs or monitor not in best:  # nothing to compare: keep the earlier
        return monitor in logs and monitor not in best
    if monitor in LOWER_IS_BETTER:
        return logs[monitor] < best[monitor]
    return logs[monitor] > best[monitor]


def phase_stopped(
    epochs: list[dict[str, Any]], number: int, patience: int | None, monitor: str
) -> bool:
    """Whether phase `number` has stopped early: `patience` of its epochs (in the history's
    epoch logs `epochs`) have gone by since its best one on `monitor`. Read from the history,
    so that a resumed run decides as the run that stopped would have."""
    done = [logs for logs in epochs if logs.get("phase", 1) == number]
    if patience is None or not done:
        return False
    best = 0
    for index, logs in enumerate(done[1:], start=1):
        if improves(logs, done[best], monitor):
            best = index
    return len(done) - 1 - best >= patience


def validates(val: ImageSet | None) -> bool:
    """Whether `val` validates (two images or more), checked before any epoch.

    Raises:
        ValueError: no class of `val` has two images, which its retrieval metrics need (an
            error found after a whole epoch otherwise).
    """
    if val is None or len(val) < 2:
        return False
    if np.unique(val.labels, return_counts=True)[1].max() < 2:
        raise ValueError(f"the validation images ({len(val)}) have no class with two images, "
                         "which their retrieval metrics need")  # fmt: skip
    return True
