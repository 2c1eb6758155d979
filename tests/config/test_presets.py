from __future__ import annotations

import pytest

from tests.conftest import TEST_PART
from tripletlab.config import RunConfig, merge
from tripletlab.data.fashion import DEBIAN_FOLDER


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
        merge(RunConfig(), preset("fast")),
        {"data": {"limit": 1500, "test_split": TEST_PART}, "train": {"epochs": 1}},
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
        merge(RunConfig(), preset("accurate")),
        {"data": {"limit": 1000, "test_split": TEST_PART}, "train": {"epochs": 1}},
    )
    assert (config.model.backbone, config.model.rotation, config.train.sampler) == (
        "resnet_small",
        10.0,
        "pk",
    )
    assert config.train.ema == 0.998
    result = train_run(config, tmp_path / "run")
    assert result.metrics["precision_at_1"] > 0.5


fashion = pytest.mark.skipif(
    not DEBIAN_FOLDER.is_dir(),
    reason="apt-get install dataset-fashion-mnist (.ci/run does)",
)


@fashion
def test_fashion_preset_runs_end_to_end_on_a_subset(tmp_path):
    from tripletlab.config import preset
    from tripletlab.models import Embedder
    from tripletlab.training import train_run

    config = merge(
        merge(RunConfig(), preset("fashion")),
        {
            "data": {"dataset": "fashion-mnist", "limit": 3000, "test_split": TEST_PART},
            "train": {"epochs": 2},
        },
    )
    assert (config.model.flip, config.model.tta_flip, config.loss.name) == (
        True,
        True,
        "semihard+ce",
    )
    result = train_run(config, tmp_path / "run")
    assert "val_map_at_r" in result.history.epochs[-1]  # a tenth held out for validation
    assert result.metrics["precision_at_1"] > 0.6  # chance: 0.1
    assert result.metrics["accuracy"] > 0.6
    model = Embedder.from_pretrained(tmp_path / "run")
    assert model.views == 10


@fashion
def test_unseen_preset_runs_end_to_end_on_classes_never_seen(tmp_path):
    from tripletlab.config import preset
    from tripletlab.training import train_run

    split = {"dataset": "fashion-mnist", "limit": 3000, "train_classes": [0, 1, 2, 3, 4],
             "test_classes": [5, 6, 7, 8, 9], "test_split": TEST_PART}  # fmt: skip
    config = merge(merge(RunConfig(), preset("unseen")), {"data": split, "train": {"epochs": 1}})
    assert (config.loss.name, config.model.tta_flip) == ("hard", False)
    result = train_run(config, tmp_path / "run")
    assert [row["name"] for row in result.metrics["per_class"]] == [
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
    ]  # fmt: skip
    assert result.metrics["precision_at_1"] > 0.5  # chance: 0.2
