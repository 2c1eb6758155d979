"""A classifier head on the embedding (the Keras guide's workflow): cross-entropy alone, two
classes with one logit, and the combined triplet + cross-entropy loss, on real MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SET_TEST_PART
from tripletlab import Embedder
from tripletlab.cli.main import app

runner = CliRunner()


def _train(folder, *extra):
    args = ["train", "--limit", "3000", "--epochs", "2", "--no-report", "--run-dir",
            str(folder), *SET_TEST_PART, *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((folder / "metrics.json").read_text()), result.output


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ce") / "run"
    metrics, output = _train(folder, "--loss", "cross-entropy", "--set", "model.head_dropout=0.2")
    return folder, metrics, output


def test_cross_entropy_classifies_far_above_chance(ce_run):
    folder, metrics, output = ce_run
    assert metrics["accuracy"] > 0.85  # chance: 0.10
    assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert min(metrics["per_class_accuracy"].values()) > 0.6
    assert "val accuracy" in output and "val loss" in output
    history = json.loads((folder / "history.json").read_text())
    assert all("val_accuracy" in e and "val_loss" in e for e in history["epochs"])
    assert history["epochs"][1]["val_loss"] < history["epochs"][0]["val_loss"]
    model = Embedder.from_pretrained(folder)
    assert model.config.classes == tuple(range(10)) and model.classifier.out_features == 10
    assert model.config.head_dropout == 0.2
    assert model.config.input_scaling == "unit"  # "auto" is saved as what it resolved to


def test_predict_prints_the_class_and_its_probability(ce_run):
    folder, _, _ = ce_run
    result = runner.invoke(app, ["predict", str(folder), "mnist:test:0", "mnist:test:1",
                                 "--json", "--top", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["label"] for row in rows] == ["7", "2"]  # MNIST's first two test digits
    for row in rows:
        assert 0.5 < row["probability"] <= 1.0 and len(row["top"]) == 3
        assert sum(t["probability"] for t in row["top"]) <= 1.0 + 1e-6


def test_the_onnx_export_includes_the_classifier(ce_run):
    pytest.importorskip("onnxruntime")
    from tripletlab.data import load_mnist
    from tripletlab.models.engines import OnnxEmbedder

    folder, _, _ = ce_run
    result = runner.invoke(app, ["export", "onnx", str(folder)])
    assert result.exit_code == 0, result.output
    exported = OnnxEmbedder(folder / "model.onnx")
    images = load_mnist("test").images[:64]
    expected = Embedder.from_pretrained(folder).embed_and_classify(images)[1]
    assert exported.has_classifier
    assert np.abs(exported.classify(images) - expected).max() < 1e-5
    onnx_rows = runner.invoke(app, ["predict", str(folder), "mnist:test:0", "--engine", "onnx",
                                    "--json"])  # fmt: skip
    assert json.loads(onnx_rows.output.splitlines()[-1])["label"] == "7"


def test_two_classes_train_one_logit_and_the_combined_loss(tmp_path):
    metrics, _ = _train(tmp_path / "run", "--loss", "semihard+ce", "--ce-weight", "0.5",
                        "--set", "data.classes=[3,5]")  # fmt: skip
    model = Embedder.from_pretrained(tmp_path / "run")
    assert model.classifier.out_features == 1 and model.config.class_names == ("3", "5")
    assert metrics["accuracy"] > 0.9 and metrics["precision_at_1"] > 0.9
    from tripletlab.data import load_mnist

    labels = load_mnist("test").labels
    chosen = [*np.flatnonzero(labels == 3)[:5], *np.flatnonzero(labels == 5)[:5]]
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "--json",
                                 *(f"mnist:test:{i}" for i in chosen)])  # fmt: skip
    predicted = [json.loads(line)["label"] for line in result.output.splitlines()]
    right = [p == str(labels[i]) for p, i in zip(predicted, chosen, strict=True)]
    assert sum(right[:5]) >= 4 and sum(right[5:]) >= 4, predicted  # the logit's two sides


def test_predict_without_a_classifier_says_how_to_get_one(tmp_path):
    _train(tmp_path / "run")
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "mnist:test:0"])
    assert result.exit_code == 1
    assert "no classifier: train with --loss cross-entropy" in result.output
