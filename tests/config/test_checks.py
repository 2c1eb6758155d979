"""Rules across sections, checked on the final config."""

from __future__ import annotations

import pytest

from tripletlab.config import RunConfig, check_config, merge, preset


def test_train_epochs_lr_and_schedule_do_not_apply_with_phases():
    transfer = merge(RunConfig(), preset("transfer"))
    check_config(transfer)
    for key, value in (("epochs", 1), ("lr", 0.1), ("schedule", "cosine")):
        with pytest.raises(ValueError, match=rf"train\.{key} applies only without phases"):
            check_config(merge(transfer, {"train": {key: value}}))
    check_config(merge(RunConfig(), {"train": {"epochs": 1, "lr": 0.1}}))  # no phases: fine


def test_a_frozen_backbone_needs_a_head():
    frozen = {"phases": [{"epochs": 1, "freeze": "backbone"}], "model": {"head": False}}
    with pytest.raises(ValueError, match=r"phases\[1\] freezes the backbone"):
        check_config(merge(RunConfig(), frozen))
    check_config(merge(RunConfig(), {"model": {"head": False}}))


def test_classifier_settings_need_a_loss_that_trains_it():
    untrained = {"model": {"classes": [0, 1], "class_names": ["a", "b"]}}
    with pytest.raises(ValueError, match="trains no classifier"):
        check_config(merge(RunConfig(), untrained))
    check_config(merge(RunConfig(), {**untrained, "loss": {"name": "cross-entropy"}}))
    with pytest.raises(ValueError, match="val_accuracy needs a classifier"):
        check_config(merge(RunConfig(), {"train": {"monitor": "val_accuracy"}}))
    no_val = {"data": {"val_fraction": 0.0}, "train": {"monitor": "val_loss"}}
    with pytest.raises(ValueError, match="needs validation images"):
        check_config(merge(RunConfig(), no_val))
    splits = {"train_split": "train[:80%]", "val_split": "train[80%:]", "test_split": "test"}
    check_config(merge(RunConfig(), {**no_val, "data": {**no_val["data"], **splits}}))


def test_an_in_batch_loss_is_refused_with_explicit_triplets():
    """`--preset spike --loss hard` used to train spike's margin loss and record `hard`."""
    spike = merge(RunConfig(), preset("spike"))
    check_config(spike)
    for loss in ({"name": "hard"}, {"name": "batch-all"}):
        with pytest.raises(ValueError, match="applies only in online mode"):
            check_config(merge(spike, {"loss": loss}))
    check_config(merge(spike, {"loss": {"margin": 0.5, "distance": "L2"}}))  # these apply


def test_settings_explicit_triplets_would_ignore_are_refused():
    """Checked before training, not when a saved run is loaded (see test_runs)."""
    cases = [
        ({"mode": "triplets", "sampler": "pk"}, r"train\.sampler applies only in online mode"),
        ({"triplets": "semihard"}, r"train\.triplets applies only with train\.mode"),
        ({"mode": "triplets", "mine_every": 10}, r"train\.mine_every applies only to mined"),
    ]
    for train, message in cases:
        with pytest.raises(ValueError, match=message):
            check_config(merge(RunConfig(), {"train": train}))
    check_config(merge(RunConfig(), {"train": {"mode": "triplets", "triplets": "hard",
                                               "mine_every": 10}}))  # fmt: skip
