"""Evaluate an embedder on a run's data; open a run with its data and best checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.config import EMBED_BATCH_SIZE
from tripletlab.data import ImageSet, RunData, run_data
from tripletlab.evaluation.per_class import per_class_report
from tripletlab.evaluation.retrieval import knn_accuracy, retrieval_metrics
from tripletlab.evaluation.verification import pair_distances, verification_metrics
from tripletlab.models import Embedder
from tripletlab.runs import RunDir

log = logging.getLogger(__name__)

# Gallery images embedded and searched at a time for 1-NN accuracy (64 MB of embeddings at
# D = 256): few enough FAISS searches, little memory.
GALLERY_CHUNK = 65_536


def evaluate_embedder(
    embedder: Embedder, data: RunData, batch_size: int = EMBED_BATCH_SIZE
) -> dict[str, Any]:
    """Test-set metrics: retrieval, 1-NN accuracy against the training images, the per-class
    triplet report and verification.

    Test classes never seen in training (`data.test_classes`) have no training images to be
    the nearest of, and no classifier output: 1-NN and classifier accuracy are then left out.

    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r`, `num_queries`,
        `knn_accuracy`, `num_test`, `per_class` (list of dicts) and `verification` (dict);
        with a classifier also `accuracy` and `per_class_accuracy` ({class name: accuracy}).
    """
    test_embeddings, probabilities = embedder.embed_and_classify(data.test.images, batch_size)
    metrics: dict[str, Any] = retrieval_metrics(test_embeddings, data.test.labels)
    # The gallery of 1-NN: training and validation images, embedded and searched chunk by
    # chunk, so that neither their images (a mapped data set larger than memory) nor their
    # embeddings (1 GB for 1,000,000 images at D = 256, and FAISS's copy) are ever whole.
    parts = [part for part in (data.train, data.val) if len(part)]
    reference_labels = np.concatenate([part.labels for part in parts])
    seen = np.isin(data.test.labels, reference_labels)
    if probabilities is not None and seen.any():
        metrics.update(classification_metrics(embedder, probabilities, data.test))
    if seen.any():
        chunks = (
            embedder.embed(part.images[start : start + GALLERY_CHUNK], batch_size=batch_size)
            for part in parts
            for start in range(0, len(part), GALLERY_CHUNK)
        )
        metrics["knn_accuracy"] = knn_accuracy(
            test_embeddings, data.test.labels, chunks, reference_labels
        )
    # Every test image; the retrieval metrics average over `num_queries`, those with another
    # image of their class in the test part.
    metrics["num_test"] = len(data.test)
    test = data.test
    metrics["per_class"] = per_class_report(test_embeddings, test.labels, test.class_names)
    distances, same = pair_distances(test_embeddings, test.labels)
    if same.any() and not same.all():
        metrics["verification"] = verification_metrics(distances, same)
    else:  # e.g. a tiny test split: nothing to verify, the rest still counts
        log.warning("verification skipped: the test set lacks same-class or different-class pairs")
    return metrics


def classification_metrics(
    embedder: Embedder, probabilities: np.ndarray, test: ImageSet
) -> dict[str, Any]:
    """Accuracy of the classifier's most probable class, overall and per class.

    Args:
        probabilities: (N, C) in the order of `embedder.config.classes`.
    Returns:
        `accuracy` and `per_class_accuracy` ({class name: accuracy}; classes of the test set
        the classifier does not know count as wrong).
    """
    classes = np.asarray(embedder.config.classes)
    predicted = classes[probabilities.argmax(1)]
    right = predicted == test.labels
    names = dict(zip(embedder.config.classes, embedder.config.class_names, strict=True))
    per_class = {}
    for label in np.unique(test.labels):
        name = names.get(int(label)) or (
            test.class_names[label] if label < len(test.class_names) else str(label)
        )
        per_class[name] = float(right[test.labels == label].mean())
    return {"accuracy": float(right.mean()), "per_class_accuracy": per_class}


def load_run(run_dir: str | Path | RunDir) -> tuple[RunDir, RunData, Embedder]:
    """A run folder, its data (the same parts as in training) and its best checkpoint.

    Raises:
        FileNotFoundError: not a run folder, or no checkpoint in it.
    """
    run = RunDir.open(run_dir)
    embedder = Embedder.from_pretrained(run.path)  # a missing checkpoint: before the data
    return run, run_data(run.config), embedder


def evaluate_run(run_dir: str | Path | RunDir) -> dict[str, Any]:
    """Recompute the test metrics of a run's best checkpoint and rewrite them in `metrics.json`."""
    run, data, embedder = load_run(run_dir)
    metrics = evaluate_embedder(embedder, data, run.config.train.eval_batch_size)
    return run.write_metrics(metrics)
