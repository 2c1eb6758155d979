"""Classify images with a run's classifier (`--loss cross-entropy` or `<triplet>+ce`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.models import Embedder
from tripletlab.models.engines import select_engine
from tripletlab.search.sources import read_images


@dataclass(frozen=True)
class Prediction:
    """The most probable class of an image, and the `top` classes with their probabilities."""

    label: str
    probability: float
    top: list[tuple[str, float]]


def require_classifier(embedder: Embedder) -> None:
    """Raise a `ValueError` saying how to get a classifier when the model has none."""
    if embedder.classifier is None:
        raise ValueError(
            "this run's model has no classifier: train with --loss cross-entropy (or "
            "semihard+ce) to predict classes; search and match work with any run"
        )


def predictions(probabilities: np.ndarray, names: list[str], top: int = 1) -> list[Prediction]:
    """Per row of probabilities (N, C) over the classes `names`: the best and the `top` best."""
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[: max(1, top)]
        ranked = [(names[i], float(row[i])) for i in order]
        results.append(Prediction(ranked[0][0], ranked[0][1], ranked))
    return results


class Predictor:
    """A run's model, ready to classify images (files or `mnist:test:0` references).

    Args:
        run_dir: a run folder (its best checkpoint).
        engine: "torch", or "onnx" (the run's `model.onnx`, exported with its classifier).
    Raises:
        ValueError: the run's model has no classifier.
    """

    def __init__(self, run_dir: str | Path, engine: str = "torch") -> None:
        self.embedder = Embedder.from_pretrained(run_dir)
        require_classifier(self.embedder)
        self.engine: Any = select_engine(self.embedder, Path(run_dir), engine)  # type: ignore[arg-type]
        self.names = list(self.embedder.config.class_names)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> probabilities (N, C) over `self.names`."""
        if isinstance(self.engine, Embedder):
            return self.engine.embed_and_classify(images)[1]
        return self.engine.classify(images)

    def predict(self, references: list[str], top: int = 1) -> list[Prediction]:
        """The class of each image (a file or a reference such as `mnist:test:0`)."""
        config = self.embedder.config
        images = read_images(references, config.image_size, config.channels)
        return predictions(self.classify(images), self.names, top)
