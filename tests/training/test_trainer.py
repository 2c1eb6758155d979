from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.evaluation import retrieval_metrics
from tripletlab.training import (
    Callback,
    Trainer,
    TrainingDivergedError,
    is_better,
    is_collapsed,
    train_run,
)


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
    trainer = Trainer(_config(sampler="pk", samples_per_class=8))
    history = trainer.fit(train, val, run_dir=tmp_path)
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
    trainer = Trainer(_config(epochs=3))
    trainer.callbacks.append(_PoisonAt(trainer.model, epoch=1))
    with pytest.raises(TrainingDivergedError, match="nan"):
        trainer.fit(train, val, run_dir=tmp_path)
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index == {"last": "epoch-0001", "best": "epoch-0001", "resume": "epoch-0001"}
    restored = Embedder.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in restored.parameters())
    assert np.isfinite(restored.embed(val.images)).all()


def test_same_seed_same_weights(small_mnist, tmp_path):
    train, _ = small_mnist
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(_config(epochs=1))
        trainer.fit(train.subset(np.arange(256)), run_dir=tmp_path / name)
        runs.append(trainer.model.head.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def _weights(model):
    return [t.detach().double().numpy().copy() for t in [*model.parameters(), *model.buffers()]]


def test_weight_average_follows_the_warmed_up_decay(tmp_path):
    trainer = Trainer(_config(ema=0.5))
    expected = _weights(trainer.model)  # the average starts at the initial weights
    rng = np.random.default_rng(0)
    for step in range(12):
        with torch.no_grad():
            for tensor in [*trainer.model.parameters(), *trainer.model.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(torch.as_tensor(rng.normal(size=tensor.shape)))
                else:
                    tensor.add_(1)
        trainer.update_ema()
        decay = min(0.5, (1 + step) / (10 + step))
        current = _weights(trainer.model)
        expected = [
            c if np.issubdtype(c.dtype, np.integer) else decay * e + (1 - decay) * c
            for e, c in zip(expected, current, strict=True)
        ]
    for average, reference in zip(_weights(trainer.ema_model), expected, strict=True):
        np.testing.assert_allclose(average, reference, rtol=1e-5, atol=1e-6)


def test_weight_average_is_validated_and_checkpointed(small_mnist, tmp_path):
    train, val = small_mnist
    trainer = Trainer(_config(epochs=1, sampler="pk", samples_per_class=8, ema=0.9))
    history = trainer.fit(train, val, run_dir=tmp_path)
    saved = Embedder.from_pretrained(tmp_path)
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, trainer.ema_model.state_dict()[name], rtol=0, atol=0)
    raw, averaged = trainer.model.head.weight, trainer.ema_model.head.weight
    assert not torch.equal(raw, averaged)
    embeddings = trainer.ema_model.embed(val.images)
    expected = retrieval_metrics(embeddings, val.labels)["map_at_r"]
    assert history.epochs[0]["val_map_at_r"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_weight_average_decay_must_be_below_one(decay):
    with pytest.raises(ValueError, match=r"train\.ema must be in \[0\.0, 1\.0\)"):
        _config(ema=decay)


def test_the_best_epoch_has_the_highest_validation_map_at_r_and_ties_keep_the_first():
    first = {"loss": 0.5, "val_map_at_r": 0.80}
    assert is_better(first, None)
    assert is_better({"loss": 0.9, "val_map_at_r": 0.81}, first)  # loss does not count
    assert not is_better({"loss": 0.1, "val_map_at_r": 0.79}, first)
    assert not is_better({"loss": 0.1, "val_map_at_r": 0.80}, first)  # a tie keeps the first
    # Without validation, the lowest training loss.
    assert is_better({"loss": 0.4}, {"loss": 0.5})
    assert not is_better({"loss": 0.6}, {"loss": 0.5})
    assert not is_better({"loss": 0.5}, {"loss": 0.5})


class _Scramble(Callback):
    """From epoch 2 on: random weights and a learning rate of 0, so epoch 2 is much worse."""

    def on_train_start(self, trainer):
        self.trainer = trainer

    def on_epoch_start(self, epoch, num_steps):
        if epoch != 1:
            return
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in self.trainer.model.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = 0.0


@pytest.mark.slow
def test_metrics_come_from_the_best_epoch_not_the_last(tmp_path):
    config = merge(RunConfig(), {"data": {"limit": 1500},
                                 "train": {"epochs": 2, "batch_size": 64, "sampler": "pk",
                                           "samples_per_class": 8}})  # fmt: skip
    result = train_run(config, tmp_path / "run", callbacks=[_Scramble()])
    epochs = result.history.epochs
    assert epochs[1]["val_map_at_r"] < epochs[0]["val_map_at_r"] - 0.1
    index = json.loads((tmp_path / "run" / "checkpoints" / "index.json").read_text())
    assert index == {"last": "epoch-0002", "best": "epoch-0001", "resume": "epoch-0002"}
    assert result.metrics["best_epoch"] == 1
    test = load_mnist("test")
    scores = {
        which: retrieval_metrics(Embedder.from_pretrained(tmp_path / "run", which).embed(
            test.images), test.labels)["map_at_r"]
        for which in ("best", "last")
    }  # fmt: skip
    assert result.metrics["map_at_r"] == scores["best"] > scores["last"] + 0.1


def test_a_collapse_is_all_points_equal():
    rng = np.random.default_rng(0)
    point = rng.normal(size=(1, 16)).astype(np.float32)
    assert is_collapsed(np.repeat(point, 50, axis=0))
    assert is_collapsed(np.repeat(point, 50, axis=0) + 1e-9)  # float rounding
    assert not is_collapsed(rng.normal(size=(50, 16)).astype(np.float32))
    assert not is_collapsed(np.repeat(point, 1, axis=0))  # one point: nothing to compare


@pytest.mark.parametrize(
    ("lr", "val", "message"),
    [
        # One step per epoch: Adam's step overflows, the loss of that step was finite.
        (1e39, False, "the weights became NaN or Inf in epoch 1"),
        (1e9, True, "the embedding collapsed in epoch 1: all 300 validation images"),
        (1e9, False, "the embedding collapsed in epoch 1: all 256 probed training images"),
    ],
)
def test_divergence_is_caught_before_anything_is_saved(small_mnist, tmp_path, lr, val, message):
    train, validation = small_mnist
    if lr > 1e30:
        train = train.subset(np.arange(64))
    trainer = Trainer(_config(epochs=2, lr=lr))
    with pytest.raises(TrainingDivergedError, match=message) as error:
        trainer.fit(train, validation if val else None, run_dir=tmp_path)
    assert "no checkpoint was written" in str(error.value)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_failed_start_leaves_no_run_folder_and_the_same_folder_can_be_retried(tmp_path):
    config = merge(RunConfig(), {"data": {"limit": 300, "val_fraction": 0.0},
                                 "train": {"epochs": 1, "lr": 1e39}})  # fmt: skip
    with pytest.raises(TrainingDivergedError):
        train_run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDivergedError):
        train_run(config, tmp_path / "empty")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    good = merge(config, {"train": {"lr": 1e-3}})
    assert train_run(good, tmp_path / "run").metrics["num_test"] == 10_000


def test_validation_without_a_pair_is_refused_before_training(small_mnist, tmp_path):
    """Trainer.fit (the library's loop) trained a whole epoch before its validation failed."""
    train, validation = small_mnist
    singles = validation.subset(np.array([np.flatnonzero(validation.labels == c)[0]
                                          for c in range(3)]))  # fmt: skip
    trainer = Trainer(_config(epochs=1))
    with pytest.raises(ValueError, match=r"validation images \(3\) have no class with two"):
        trainer.fit(train, singles, run_dir=tmp_path)
    assert trainer.history.epochs == [] and not (tmp_path / "checkpoints").exists()
