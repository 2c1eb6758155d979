from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import Callback, Trainer


class _Recorder(Callback):
    def __init__(self):
        self.seen = []

    def on_train_start(self, trainer):
        self.trainer = trainer

    def on_epoch_start(self, epoch, num_steps):
        optimizer = self.trainer.optimizer
        trainable = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        self.seen.append((epoch, optimizer.param_groups[0]["lr"], id(optimizer), trainable))


def test_phases_freeze_then_fine_tune_with_a_rebuilt_optimizer(tmp_path):
    config = merge(RunConfig(), {
        "model": {"backbone": "resnet_small", "embedding_dim": 16},
        "train": {"batch_size": 32},
        "phases": [{"epochs": 2, "lr": 1e-3, "freeze": "backbone"},
                   {"epochs": 1, "lr": 1e-5, "freeze": "none", "optimizer": "sgd"}],
    })  # fmt: skip
    train = load_mnist("train").subset(np.arange(256))
    trainer = Trainer(config)
    recorder = _Recorder()
    trainer.callbacks.append(recorder)
    backbone_before = trainer.model.backbone.layer1.conv1.weight.clone()
    history = trainer.fit(train, run_dir=tmp_path)
    (e0, lr0, opt0, n0), (e1, lr1, opt1, n1), (e2, lr2, opt2, n2) = recorder.seen
    head = sum(p.numel() for p in trainer.model.head.parameters())
    assert (e0, e1, e2) == (0, 1, 2) and (lr0, lr1, lr2) == (1e-3, 1e-3, 1e-5)
    assert opt0 == opt1 != opt2 and isinstance(trainer.optimizer, torch.optim.SGD)
    assert n0 == n1 == head and n2 == sum(p.numel() for p in trainer.model.parameters())
    assert [e["phase"] for e in history.epochs] == [1, 1, 2]
    assert not torch.equal(trainer.model.backbone.layer1.conv1.weight, backbone_before)


def test_phases_come_from_yaml_and_are_checked(tmp_path):
    from tripletlab.config import load_yaml

    path = tmp_path / "p.yaml"
    path.write_text(
        "phases:\n  - {epochs: 3, lr: 1e-3, freeze: backbone}\n  - {epochs: 2, lr: 1e-5}\n"
    )
    config = merge(RunConfig(), load_yaml(path))
    assert [p.epochs for p in config.phases] == [3, 2] and config.phases[1].lr == 1e-5
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown key"):
        merge(RunConfig(), {"phases": [{"epoch": 3}]})


def test_cosine_schedule_decays_to_zero_over_the_phase(tmp_path):
    config = merge(RunConfig(), {"train": {"batch_size": 32, "epochs": 2, "lr": 1e-3,
                                           "schedule": "cosine"}})  # fmt: skip
    train = load_mnist("train").subset(np.arange(320))
    trainer = Trainer(config)
    rates, used = [], []

    class _Rates(Callback):
        def on_step_end(self, step, loss, images_per_second):
            rates.append(trainer.optimizer.param_groups[0]["lr"])
            used.append(trainer.lr)

    trainer.callbacks.append(_Rates())
    history = trainer.fit(train, run_dir=tmp_path)
    assert len(rates) == 20 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    # Each epoch logs the rate its last step used (it logged the phase's 1e-3 throughout).
    assert [e["lr"] for e in history.epochs] == [used[9], used[19]] and used[19] < 1e-4
    assert rates[0] < 1e-3 and all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[9] == pytest.approx(0.5e-3, rel=0.1)


def test_tensorboard_logs_the_learning_rate_of_the_phase_running(tmp_path):
    """The fine-tuning phase's 1e-5, and a cosine schedule's decay: the logger reads the
    optimizer in use, not the first one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tripletlab.training import TensorBoardCallback

    config = merge(RunConfig(), {
        "train": {"batch_size": 32},
        "phases": [{"epochs": 1, "lr": 1e-3, "freeze": "backbone"},
                   {"epochs": 1, "lr": 1e-5, "schedule": "cosine"}],
    })  # fmt: skip
    train = load_mnist("train").subset(np.arange(128))
    trainer = Trainer(config, callbacks=[TensorBoardCallback(every=1)])
    trainer.fit(train, run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    rates = [event.value for event in events.Scalars("train/lr")]
    assert len(rates) == 8  # 4 steps per epoch, every step logged
    assert rates[:4] == pytest.approx([1e-3] * 4)
    cosine = [1e-5 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]  # what steps used
    assert rates[4:] == pytest.approx(cosine, rel=1e-5)


def test_mining_explicit_triplets_keeps_a_frozen_backbone_in_inference_mode(tmp_path):
    """Offline mining embeds the training set after the epoch set the layers' modes; it put
    the frozen backbone's BatchNorm back in training mode, so its statistics moved."""
    config = merge(RunConfig(), {
        "model": {"backbone": "resnet_small", "embedding_dim": 16},
        "train": {"mode": "triplets", "triplets": "semihard", "batch_size": 16,
                  "feature_cache": False, "mine_every": 4},
        "phases": [{"epochs": 1, "lr": 1e-3, "freeze": "backbone"}],
    })  # fmt: skip
    trainer = Trainer(config)
    statistics = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()
                  if "running" in k or "num_batches" in k}  # fmt: skip
    trainer.fit(load_mnist("train").subset(np.arange(200)), run_dir=tmp_path)
    after = trainer.model.backbone.state_dict()
    for key, value in statistics.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)


def test_cosine_schedule_stays_at_zero_when_pk_epochs_run_longer(tmp_path):
    """A PK epoch's length depends on how its classes run out: with one large class and three
    small ones, later epochs took more batches than the first, and the rate rose again after
    reaching 0 (PyTorch's cosine repeats)."""
    mnist = load_mnist("train")
    picked = np.concatenate([np.flatnonzero(mnist.labels == digit)[:count]
                             for digit, count in ((0, 12), (1, 4), (2, 4), (3, 4))])  # fmt: skip
    config = merge(RunConfig(), {"data": {"val_fraction": 0.0},
                                 "train": {"batch_size": 8, "samples_per_class": 4,
                                           "sampler": "pk", "epochs": 4, "lr": 1e-3,
                                           "schedule": "cosine", "seed": 3}})  # fmt: skip
    trainer = Trainer(config)
    rates, lengths = [], []

    class _Rates(Callback):
        def on_epoch_start(self, epoch, num_steps):
            lengths.append(num_steps)

        def on_step_end(self, step, loss, images_per_second):
            rates.append(trainer.optimizer.param_groups[0]["lr"])

    trainer.callbacks.append(_Rates())
    trainer.fit(mnist.subset(picked), run_dir=tmp_path)
    assert len(rates) > 4 * lengths[0]  # the case: more steps than the schedule was made for
    assert all(a >= b for a, b in itertools.pairwise(rates)), rates
    assert rates[-1] == 0.0
