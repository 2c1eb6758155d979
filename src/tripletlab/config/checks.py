"""Rules between fields of a run config. Each field checked itself when its section was built
(`tripletlab.config.fields`); what remains are the rules that involve several fields, checked
on the final config, after every layer (preset, YAML, flags) was applied."""

from __future__ import annotations

from pathlib import Path

from tripletlab.config.sections import DATASET_NAMES, RunConfig


def check_config(config: RunConfig) -> None:
    """Refuse a config whose fields do not fit together, before any data is read.

    Raises:
        ValueError: naming the settings and what is accepted.
    """
    data, model, train = config.data, config.model, config.train
    if data.dataset == "mnist":
        if model.image_size != (28, 28) or model.channels != 1:
            raise ValueError(
                f"MNIST images are 28 x 28 grey; got model.image_size {list(model.image_size)}, "
                f"model.channels {model.channels}"
            )
    elif data.dataset not in DATASET_NAMES:
        if not Path(data.dataset).expanduser().is_dir():
            raise ValueError(
                f"unknown dataset {data.dataset!r}; expected {', '.join(DATASET_NAMES)} or a "
                "folder with one sub-folder per class"
            )
        if model.channels not in (1, 3):
            raise ValueError(f"images of a folder are read as 1 (grey) or 3 (RGB) channels, "
                             f"not model.channels {model.channels}")  # fmt: skip
    if model.tta_shift >= min(model.image_size):
        raise ValueError(
            f"model.tta_shift must be smaller than the image ({min(model.image_size)} pixels), "
            f"got {model.tta_shift}"
        )
    if train.sampler == "pk" and train.batch_size < 2 * train.samples_per_class:
        raise ValueError(
            f"pk batches need train.batch_size >= 2 * train.samples_per_class (two classes); got "
            f"{train.batch_size} and {train.samples_per_class}"
        )
    if config.loss.soft and config.loss.name != "hard":
        raise ValueError(f"loss.soft applies only to the hard loss, not {config.loss.name!r}")
