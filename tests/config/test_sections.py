"""Each section converts and checks its own fields when built, naming the key."""

from __future__ import annotations

import math

import pytest

from tripletlab.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    PhaseConfig,
    RunConfig,
    TrainConfig,
)


def test_defaults_are_the_tutorial_recipe():
    config = RunConfig()
    assert (config.model.backbone, config.loss.name) == ("seed_cnn", "semihard")
    assert config.loss.margin == 1.0
    assert (config.loss.distance, config.train.lr, config.train.batch_size) == ("L2", 1e-3, 32)
    assert (config.train.sampler, config.train.epochs) == ("shuffle", 5)


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        (TrainConfig, {"lr": "1e-3"}, ("lr", 1e-3)),  # PyYAML reads 1e-3 as text
        (TrainConfig, {"lr": 1}, ("lr", 1.0)),
        (TrainConfig, {"epochs": "7"}, ("epochs", 7)),
        (ModelConfig, {"image_size": 64}, ("image_size", (64, 64))),
        (ModelConfig, {"image_size": [32, 48]}, ("image_size", (32, 48))),
        (DataConfig, {"classes": [5, 6]}, ("classes", (5, 6))),
        (ModelConfig, {"imports": ["my_pkg.backbones"]}, ("imports", ("my_pkg.backbones",))),
        (TrainConfig, {"ema": None}, ("ema", None)),
    ],
)  # fmt: skip
def test_values_are_converted_where_that_is_unambiguous(section, values, expected):
    key, value = expected
    got = getattr(section(**values), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        (TrainConfig, {"schedule": "cosin"}, "train.schedule must be one of constant, cosine; "
                                             "got 'cosin'"),
        (TrainConfig, {"batch_size": 2.5}, "train.batch_size must be a whole number, got 2.5"),
        (TrainConfig, {"epochs": "ten"}, "train.epochs must be a whole number, got 'ten'"),
        (TrainConfig, {"epochs": True}, "train.epochs must be a whole number, got True"),
        (TrainConfig, {"epochs": 0}, "train.epochs must be >= 1, got 0"),
        (TrainConfig, {"lr": float("nan")}, "train.lr must be a finite number, got nan"),
        (TrainConfig, {"lr": math.inf}, "train.lr must be a finite number, got inf"),
        (TrainConfig, {"lr": 0.0}, "train.lr must be > 0.0, got 0.0"),
        (TrainConfig, {"lr": None}, "train.lr must be a number, got None"),
        (TrainConfig, {"ema": 1.0}, "train.ema must be in [0.0, 1.0), got 1.0"),
        (TrainConfig, {"seed": -1}, "train.seed must be in [0, 4294967296), got -1"),
        (TrainConfig, {"seed": 2**64}, f"train.seed must be in [0, 4294967296), got {2**64}"),
        (TrainConfig, {"bn_train": "yes"}, "train.bn_train must be true or false, got 'yes'"),
        (ModelConfig, {"image_size": "abc"}, "model.image_size must be a list of 2 values"),
        (ModelConfig, {"image_size": [0, 28]}, "model.image_size must be >= 1"),
        (ModelConfig, {"imports": ["a b"]}, "model.imports must be importable module names"),
        (ModelConfig, {"backbone": 3}, "model.backbone must be text, got 3"),
        (LossConfig, {"name": "contrastive"}, "loss.name must be one of semihard, hard, "
                                              "batch-all, cross-entropy"),
        (LossConfig, {"distance": "cosine"}, "loss.distance must be one of L2, squared-L2, "
                                             "angular"),
        (LossConfig, {"margin": -0.1}, "loss.margin must be >= 0.0, got -0.1"),
        (DataConfig, {"val_fraction": 1.0}, "data.val_fraction must be in [0.0, 1.0), got 1.0"),
        (DataConfig, {"limit": 1}, "data.limit must be >= 2, got 1"),
        (DataConfig, {"classes": 5}, "data.classes must be a list, got 5"),
        (PhaseConfig, {"freeze": "all"}, "phases[].freeze must be one of none, backbone, until:"),
        (PhaseConfig, {"freeze": "until: "}, "phases[].freeze must be one of none, backbone"),
        (ModelConfig, {"input_scaling": "imagenet"}, "model.input_scaling must be one of auto"),
        (ModelConfig, {"input_mean": [0.5, 0.5]}, "model.input_mean needs one value per channel"),
        (ModelConfig, {"input_std": [0.0]}, "model.input_std must be > 0.0"),
        (ModelConfig, {"classes": [1], "class_names": ["a"]}, "needs at least two classes"),
        (ModelConfig, {"classes": [1, 2]}, "model.class_names must name each of model.classes"),
        (ModelConfig, {"head_dropout": 1.0}, "model.head_dropout must be in [0.0, 1.0)"),
        (LossConfig, {"ce_weight": -1}, "loss.ce_weight must be >= 0.0"),
        (LossConfig, {"ce_weight": 0.5}, "loss.ce_weight applies only to a triplet loss with"),
        (ModelConfig, {"input_scaling": "unit", "input_mean": [0.5]}, "applies only to model.in"),
        (LossConfig, {"name": "semihard+ce", "soft": True}, "loss.soft applies only to the hard"),
        (TrainConfig, {"patience": 0}, "train.patience must be >= 1"),
        (TrainConfig, {"monitor": "val_auc"}, "train.monitor must be one of auto"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_key(section, values, message):
    with pytest.raises(ValueError) as error:
        section(**values)
    assert message in str(error.value)


def test_fields_of_one_section_that_do_not_fit_together():
    with pytest.raises(ValueError, match=r"model\.tta_shift must be smaller than the image"):
        ModelConfig(tta_shift=28)
    assert ModelConfig(tta_shift=27).tta_shift == 27
    with pytest.raises(ValueError, match=r"pk batches need train\.batch_size >= 2 \*"):
        TrainConfig(sampler="pk", batch_size=32, samples_per_class=32)
    assert TrainConfig(sampler="shuffle", batch_size=32, samples_per_class=32).batch_size == 32
    with pytest.raises(ValueError, match=r"loss\.soft applies only to the hard loss"):
        LossConfig(name="semihard", soft=True)
