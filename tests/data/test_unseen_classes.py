"""The metric-learning protocol: train on some classes, test on classes never seen."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.cli.train import parse_classes
from tripletlab.config import DataConfig
from tripletlab.data import load_run_data


def test_no_test_class_is_in_training_or_validation():
    data = load_run_data(DataConfig(limit=3000, train_classes=(0, 1, 2, 3, 4)))
    assert set(np.unique(data.train.labels)) == {0, 1, 2, 3, 4}
    assert set(np.unique(data.val.labels)) <= {0, 1, 2, 3, 4} and len(data.val) > 100
    assert set(np.unique(data.test.labels)) == {5, 6, 7, 8, 9}  # the complement by default
    assert len(data.test) == int(np.isin(load_run_data(DataConfig(limit=3000)).test.labels,
                                         [5, 6, 7, 8, 9]).sum())  # fmt: skip
    only_test = load_run_data(DataConfig(limit=3000, test_classes=(7, 8)))
    assert set(np.unique(only_test.train.labels)) == {0, 1, 2, 3, 4, 5, 6, 9}
    assert set(np.unique(only_test.test.labels)) == {7, 8}


def test_overlapping_or_empty_class_lists_are_refused():
    with pytest.raises(ValueError, match=r"share \[4\]"):
        DataConfig(train_classes=(0, 4), test_classes=(4, 5))
    with pytest.raises(ValueError, match="both need classes"):
        load_run_data(DataConfig(limit=500, test_classes=tuple(range(10))))
    for key, config in (("classes", DataConfig(limit=500, classes=(0, 1, 11))),
                        ("train_classes", DataConfig(limit=500, train_classes=(0, 11))),
                        ("test_classes", DataConfig(limit=500, test_classes=(12,)))):  # fmt: skip
        with pytest.raises(ValueError, match=rf"data.{key} names classes the data set does not "
                                             r"have: 1[12] \(its classes: 0-9\)"):  # fmt: skip
            load_run_data(config)


def test_class_lists_on_the_command_line():
    assert parse_classes("0-4", "--train-classes") == [0, 1, 2, 3, 4]
    assert parse_classes("0-2, 7", "--x") == [0, 1, 2, 7] and parse_classes(None, "--x") is None
    with pytest.raises(ValueError, match="--test-classes takes class ids like 0-4"):
        parse_classes("five", "--test-classes")
    with pytest.raises(ValueError, match="names over 1,000,000 class ids"):  # was a hang
        parse_classes("0-9999999999", "--train-classes")
    assert len(parse_classes("0-499999,500000-999999", "--x")) == 1_000_000
    with pytest.raises(ValueError, match=r"--train-classes: 9-5 is an empty range \(write 5-9"):
        parse_classes("9-5", "--train-classes")


@pytest.mark.slow
def test_a_run_on_unseen_classes_reports_on_them_only(tmp_path):
    result = CliRunner().invoke(app, ["train", "--train-classes", "0-4", "--limit", "3000",
                                      "--epochs", "1", "--no-report", "--run-dir",
                                      str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [row["name"] for row in metrics["per_class"]] == ["5", "6", "7", "8", "9"]
    assert "knn_accuracy" not in metrics and 0.3 < metrics["precision_at_1"] < 1.0
    bad = CliRunner().invoke(app, ["train", "--train-classes", "a-b", "--dry-run"])
    assert bad.exit_code == 1 and "--train-classes takes class ids" in bad.output
