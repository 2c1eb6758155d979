"""Retrieval metrics, per-class triplet report, verification, throughput, run evaluation."""

from tripletlab.evaluation.evaluate import evaluate_embedder, evaluate_run, load_run
from tripletlab.evaluation.per_class import class_triplets, format_per_class, per_class_report
from tripletlab.evaluation.retrieval import knn_accuracy, retrieval_metrics
from tripletlab.evaluation.throughput import benchmark_run, measure_throughput
from tripletlab.evaluation.verification import pair_distances, verification_metrics

__all__ = [
    "benchmark_run",
    "class_triplets",
    "evaluate_embedder",
    "evaluate_run",
    "format_per_class",
    "knn_accuracy",
    "load_run",
    "measure_throughput",
    "pair_distances",
    "per_class_report",
    "retrieval_metrics",
    "verification_metrics",
]
