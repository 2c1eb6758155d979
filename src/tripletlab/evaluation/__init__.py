"""Retrieval metrics and run evaluation."""

from tripletlab.evaluation.evaluate import evaluate_embedder, write_metrics
from tripletlab.evaluation.retrieval import knn_accuracy, retrieval_metrics

__all__ = ["evaluate_embedder", "knn_accuracy", "retrieval_metrics", "write_metrics"]
