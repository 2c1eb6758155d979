"""Validation loss beside the retrieval metrics, the monitored metric, and stopping a phase
early when it no longer improves."""

from __future__ import annotations

import numpy as np
import pytest

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import Callback, Trainer
from tripletlab.training.validation import phase_stopped, resolve_monitor


@pytest.fixture(scope="module")
def mnist_parts():
    train = load_mnist("train")
    return train.subset(np.arange(600)), train.subset(np.arange(600, 900))


class _Notes(Callback):
    def __init__(self):
        self.notes = []

    def on_note(self, text):
        self.notes.append(text)


def test_a_phase_that_stops_improving_stops_and_the_next_one_runs(mnist_parts, tmp_path):
    train, val = mnist_parts
    # A learning rate too small to change a float32 weight: no epoch improves on the first.
    config = merge(RunConfig(), {
        "train": {"batch_size": 64, "patience": 1},
        "phases": [{"epochs": 4, "lr": 1e-30}, {"epochs": 1, "lr": 1e-3}],
    })  # fmt: skip
    notes = _Notes()
    history = Trainer(config, callbacks=[notes]).fit(train, val, run_dir=tmp_path)
    assert [e["epoch"] for e in history.epochs] == [1, 2, 5]
    assert [e["phase"] for e in history.epochs] == [1, 1, 2]
    assert history.epochs[0]["val_map_at_r"] == history.epochs[1]["val_map_at_r"]
    assert notes.notes == ["val_map_at_r has not improved for 1 epoch: phase 1 stops early "
                           "after epoch 2"]  # fmt: skip
    assert (tmp_path / "checkpoints" / "epoch-0005").is_dir()


@pytest.mark.parametrize("mode", ["online", "triplets"])
def test_the_validation_loss_is_logged_and_can_pick_the_best_epoch(mnist_parts, tmp_path, mode):
    train, val = mnist_parts
    config = merge(RunConfig(), {"train": {"batch_size": 32, "epochs": 2, "mode": mode,
                                           "monitor": "val_loss"}})  # fmt: skip
    trainer = Trainer(config)
    history = trainer.fit(train, val, run_dir=tmp_path)
    losses = [e["val_loss"] for e in history.epochs]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    assert history.best_epoch == 1 + int(np.argmin(losses))
    assert trainer.monitor == "val_loss"


def test_validation_scores_count_only_the_classifier_classes():
    from tripletlab.losses import ClassificationLoss
    from tripletlab.training.validation import validation_scores

    config = merge(RunConfig(), {"loss": {"name": "cross-entropy"}})
    labels = np.array([0, 1, 1, 7, 7])  # 7: a validation class the classifier lacks
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.5, 0.5]])
    scores = validation_scores(config, ClassificationLoss([0, 1]), np.zeros((5, 2), "f"),
                               probabilities, labels)  # fmt: skip
    assert scores["val_accuracy"] == pytest.approx(2 / 3)
    assert scores["val_loss"] == pytest.approx(-np.log([0.9, 0.8, 0.4]).mean())
    unknown_only = validation_scores(config, ClassificationLoss([0, 1]), np.zeros((2, 2), "f"),
                                     probabilities[:2], np.array([7, 7]))  # fmt: skip
    assert unknown_only == {"val_loss": 0.0}


def test_a_wrong_layer_of_a_later_phase_is_refused_before_training():
    config = merge(RunConfig(), {
        "model": {"backbone": "resnet_small", "embedding_dim": 8},
        "phases": [{"epochs": 1, "freeze": "backbone"}, {"epochs": 1, "freeze": "until:layr3"}],
    })  # fmt: skip
    with pytest.raises(ValueError, match=r"phases\[2\]: freeze 'until:layr3': the backbone has no"):
        Trainer(config)


def test_phase_stopped_counts_the_epochs_since_the_phase_best():
    epochs = [
        {"epoch": 1, "phase": 1, "loss": 0.5},
        {"epoch": 2, "phase": 1, "loss": 0.4},
        {"epoch": 3, "phase": 1, "loss": 0.45},
        {"epoch": 4, "phase": 2, "loss": 0.9},
    ]
    assert not phase_stopped(epochs, 1, 2, "loss")
    assert phase_stopped(epochs, 1, 1, "loss")
    assert not phase_stopped(epochs, 2, 1, "loss")  # its own epochs only
    assert not phase_stopped(epochs, 1, None, "loss")
    ties = [{"phase": 1, "val_map_at_r": 0.5}, {"phase": 1, "val_map_at_r": 0.5}]
    assert phase_stopped(ties, 1, 1, "val_map_at_r")  # a tie is no improvement


def test_monitor_defaults_and_refusals():
    config = RunConfig()
    assert resolve_monitor(config, True) == "val_map_at_r"
    assert resolve_monitor(config, False) == "loss"
    ce = merge(config, {"loss": {"name": "cross-entropy"}})
    assert resolve_monitor(ce, True) == "val_accuracy"
    with pytest.raises(ValueError, match="needs validation images"):
        resolve_monitor(merge(config, {"train": {"monitor": "val_loss"}}), False)
    from tripletlab.config import check_config

    with pytest.raises(ValueError, match="val_accuracy needs a classifier"):
        check_config(merge(config, {"train": {"monitor": "val_accuracy"}}))
