"""Evaluate an embedder on a run's data, and (re)write `metrics.json`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tripletlab.config import EMBED_BATCH_SIZE
from tripletlab.data.datasets import RunData
from tripletlab.evaluation.per_class import per_class_report
from tripletlab.evaluation.retrieval import knn_accuracy, retrieval_metrics
from tripletlab.evaluation.verification import pair_distances, verification_metrics
from tripletlab.models import Embedder
from tripletlab.utils.io import atomic_write_json

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def evaluate_embedder(
    embedder: Embedder, data: RunData, batch_size: int = EMBED_BATCH_SIZE
) -> dict[str, Any]:
    """Test-set metrics: retrieval, 1-NN accuracy against the training images, the per-class
    triplet report and verification.

    Returns:
        Dict with `precision_at_1`, `r_precision`, `map_at_r`, `knn_accuracy`, `num_test`,
        `per_class` (list of dicts) and `verification` (dict).
    """
    test_embeddings = embedder.embed(data.test.images, batch_size=batch_size)
    metrics: dict[str, Any] = retrieval_metrics(test_embeddings, data.test.labels)
    reference = data.reference()
    reference_embeddings = embedder.embed(reference.images, batch_size=batch_size)
    metrics["knn_accuracy"] = knn_accuracy(
        test_embeddings, data.test.labels, reference_embeddings, reference.labels
    )
    metrics["num_test"] = metrics.pop("num_queries")
    test = data.test
    metrics["per_class"] = per_class_report(test_embeddings, test.labels, test.class_names)
    distances, same = pair_distances(test_embeddings, test.labels)
    if same.any() and not same.all():
        metrics["verification"] = verification_metrics(distances, same)
    else:  # e.g. a tiny test split: nothing to verify, the rest still counts
        log.warning("verification skipped: the test set lacks same-class or different-class pairs")
    return metrics


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge `metrics` into `RUN_DIR/metrics.json` (other keys kept) and write it atomically."""
    path = Path(run_dir) / METRICS_FILE
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(metrics)
    atomic_write_json(path, merged)
    return merged
