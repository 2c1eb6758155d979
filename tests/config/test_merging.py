"""Layers of settings: YAML files, `--set` assignments, and how they combine."""

from __future__ import annotations

import pytest

from tripletlab.config import (
    RunConfig,
    combine,
    load_yaml,
    merge,
    parse_assignments,
    preset,
)


def test_yaml_then_flags_override_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("loss:\n  name: hard\n  margin: 0.5\ntrain:\n  epochs: 2\n  lr: 3e-3\n"
                    "model:\n  image_size: 32\n")  # fmt: skip
    config = merge(RunConfig(), load_yaml(path))
    config = merge(config, {"train": {"epochs": 7}})
    assert config.loss.name == "hard" and config.loss.margin == 0.5
    assert config.train.epochs == 7 and config.train.lr == 3e-3
    assert config.model.image_size == (32, 32)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_null_unsets_a_key_that_may_be_unset():
    config = merge(RunConfig(), preset("accurate"))
    assert config.train.ema == 0.998
    assert merge(config, {"train": {"ema": None}}).train.ema is None
    with pytest.raises(ValueError, match=r"train\.epochs must be a whole number, got None"):
        merge(config, {"train": {"epochs": None}})


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key train\.epoch; expected one of .*epochs"):
        merge(RunConfig(), {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown config section"):
        merge(RunConfig(), {"optimizer": {}})
    with pytest.raises(ValueError, match="must be a mapping"):
        merge(RunConfig(), {"train": [1, 2]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) epoch in phase 2"):
        merge(RunConfig(), {"phases": [{"epochs": 1}, {"epoch": 3}]})
    with pytest.raises(ValueError, match=r"phases\[2\]\.lr must be > 0\.0, got 0\.0"):
        merge(RunConfig(), {"phases": [{"epochs": 1}, {"lr": 0}]})


def test_layers_are_combined_before_they_are_checked():
    """A YAML file's K = 32 with a flag's batch of 128: 32 would be too small a batch for
    K = 32 on its own, but only the combined values are checked."""
    yaml_layer = {"train": {"sampler": "pk", "samples_per_class": 32}}
    flags = {"train": {"batch_size": 128}}
    with pytest.raises(ValueError, match="pk batches"):
        merge(RunConfig(), yaml_layer)
    config = merge(RunConfig(), combine(yaml_layer, flags))
    assert (config.train.batch_size, config.train.samples_per_class) == (128, 32)
    assert combine({"phases": [{"epochs": 1}]}, {"phases": [{"epochs": 2}]}) == {
        "phases": [{"epochs": 2}]
    }
    assert combine({"train": {"lr": 1}}, None, {"train": {"seed": 2}}) == {
        "train": {"lr": 1, "seed": 2}
    }


def test_assignments_are_read_as_yaml():
    got = parse_assignments(
        ["train.lr=3e-3", "model.flip=true", "model.image_size=[64, 64]", "train.ema=null",
         "data.train_split=train[:40%]", "phases=[{epochs: 2}]"]
    )  # fmt: skip
    assert got == {
        "train": {"lr": "3e-3", "ema": None},
        "model": {"flip": True, "image_size": [64, 64]},
        "data": {"train_split": "train[:40%]"},
        "phases": [{"epochs": 2}],
    }
    for bad, message in [("train.lr", "expected section.key=value"), ("lr=3", "expected"),
                         ("train.=3", "expected"), ("=3", "expected"),
                         ("a.b.c=1", "expected"), ("train.lr=", "no value"),
                         ("train.lr=[1", "not valid YAML")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_assignments([bad])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: [1\n", r"not a valid YAML run config \(line 2\)"),
        ("!!python/object/apply:os.system ['echo hi']\n", "not a valid YAML run config"),
        ("false\n", "must be a mapping of sections"),
        ("0\n", "must be a mapping of sections"),
        ("[]\n", "must be a mapping of sections"),
        ("- 1\n- 2\n", "must be a mapping of sections"),
    ],
)
def test_bad_yaml_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_yaml(path)


def test_an_empty_yaml_file_is_an_empty_config(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing set\n")
    assert load_yaml(tmp_path / "empty.yaml") == {}
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")
