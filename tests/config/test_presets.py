from __future__ import annotations

import pytest

from tripletlab.config import RunConfig, merge


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
