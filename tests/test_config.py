from __future__ import annotations

import pytest

from tripletlab.config import RunConfig, load_yaml, merge


def test_defaults_are_the_tutorial_recipe():
    config = RunConfig()
    assert (config.model.backbone, config.loss.name, config.loss.margin) == (
        "seed_cnn",
        "semihard",
        1.0,
    )
    assert (config.loss.distance, config.train.lr, config.train.batch_size) == ("L2", 1e-3, 32)
    assert (config.train.sampler, config.train.epochs) == ("shuffle", 5)


def test_yaml_then_flags_override_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "loss:\n  name: hard\n  margin: 0.5\ntrain:\n  epochs: 2\nmodel:\n  image_size: 32\n"
    )
    config = merge(RunConfig(), load_yaml(path))
    config = merge(config, {"train": {"epochs": 7, "lr": None}})
    assert config.loss.name == "hard" and config.loss.margin == 0.5
    assert config.train.epochs == 7 and config.train.lr == 1e-3
    assert config.model.image_size == (32, 32)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key train\.epoch; expected one of .*epochs"):
        merge(RunConfig(), {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown config section"):
        merge(RunConfig(), {"optimizer": {}})


def test_spike_preset_is_the_projects_recipe():
    from tripletlab.config import preset

    config = merge(RunConfig(), preset("spike"))
    assert (config.model.backbone, config.model.head, config.model.normalize) == (
        "spike_cnn",
        False,
        False,
    )
    assert (config.train.mode, config.train.triplets) == ("triplets", "random")
    assert (config.train.batch_size, config.train.epochs, config.loss.margin) == (32, 2, 1.0)
    assert config.loss.distance == "squared-L2"
    with pytest.raises(ValueError, match="spike"):
        preset("nope")


def test_fast_preset_runs_end_to_end_on_a_subset(tmp_path):
    from tripletlab.config import preset
    from tripletlab.training import train_run

    config = merge(
        merge(RunConfig(), preset("fast")), {"data": {"limit": 1500}, "train": {"epochs": 1}}
    )
    assert (config.model.backbone, config.train.schedule, config.train.sampler) == (
        "spike_cnn",
        "cosine",
        "pk",
    )
    result = train_run(config, tmp_path / "run")
    assert result.metrics["precision_at_1"] > 0.8


def test_accurate_preset_runs_end_to_end_on_a_subset(tmp_path):
    from tripletlab.config import preset
    from tripletlab.training import train_run

    config = merge(
        merge(RunConfig(), preset("accurate")), {"data": {"limit": 1000}, "train": {"epochs": 1}}
    )
    assert (config.model.backbone, config.model.rotation, config.train.sampler) == (
        "resnet_small",
        10.0,
        "pk",
    )
    assert config.train.ema == 0.998
    result = train_run(config, tmp_path / "run")
    assert result.metrics["precision_at_1"] > 0.5
