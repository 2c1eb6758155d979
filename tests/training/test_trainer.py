from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import Callback, Trainer, TrainingDivergedError, new_run_dir


@pytest.fixture(scope="module")
def small_mnist():
    train = load_mnist("train")
    return train.subset(np.arange(1200)), train.subset(np.arange(1200, 1500))


def _config(**train):
    return merge(RunConfig(), {"train": {"epochs": 2, "batch_size": 64, **train}})


class _PoisonAt(Callback):
    """Puts a NaN into the weights at the start of an epoch, as a diverging run would."""

    def __init__(self, model, epoch):
        self.model, self.epoch = model, epoch

    def on_epoch_start(self, epoch, num_steps):
        if epoch == self.epoch:
            with torch.no_grad():
                self.model.head.weight[0, 0] = float("nan")


def test_training_lowers_the_loss_and_checkpoints_every_epoch(small_mnist, tmp_path):
    train, val = small_mnist
    trainer = Trainer(_config(sampler="pk", samples_per_class=8), tmp_path)
    history = trainer.fit(train, val)
    assert len(history.epochs) == 2
    first, last = np.mean(history.step_losses[:5]), np.mean(history.step_losses[-5:])
    assert last < first
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index["last"] == "epoch-0002"
    assert index["best"] in ("epoch-0001", "epoch-0002")
    assert "val_map_at_r" in history.epochs[0]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["step_losses"]) == len(history.step_losses)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small_mnist, tmp_path):
    train, val = small_mnist
    trainer = Trainer(_config(epochs=3), tmp_path)
    trainer.callbacks.append(_PoisonAt(trainer.model, epoch=1))
    with pytest.raises(TrainingDivergedError, match="nan"):
        trainer.fit(train, val)
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index == {"last": "epoch-0001", "best": "epoch-0001"}
    restored = Embedder.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in restored.parameters())
    assert np.isfinite(restored.embed(val.images)).all()


def test_same_seed_same_weights(small_mnist, tmp_path):
    train, _ = small_mnist
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(_config(epochs=1), tmp_path / name)
        trainer.fit(train.subset(np.arange(256)))
        runs.append(trainer.model.head.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_run_folders_are_never_reused(tmp_path):
    config = RunConfig()
    first = new_run_dir(config, base=tmp_path)
    second = new_run_dir(config, base=tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    (first / "config.yaml").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        new_run_dir(config, run_dir=first)
