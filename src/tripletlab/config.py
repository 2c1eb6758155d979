"""Run configuration: one frozen dataclass per component, defaults in code, then YAML, then flags.

The defaults are the TF Addons tutorial's recipe: seed_cnn, semi-hard loss, margin 1.0, L2,
Adam 1e-3, shuffled batches of 32, 5 epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how much of them to use."""

    dataset: str = "mnist"
    limit: int | None = None  # use only this many training images (quick runs)
    val_fraction: float = 0.1  # held out of the training images for per-epoch validation


@dataclass(frozen=True)
class ModelConfig:
    """The embedding network."""

    backbone: str = "seed_cnn"
    embedding_dim: int = 256  # size of the linear head's output
    head: bool = True  # False: the backbone's output is the embedding
    normalize: bool = True  # L2-normalize the embedding
    channels: int = 1
    image_size: tuple[int, int] = (28, 28)


@dataclass(frozen=True)
class LossConfig:
    """The in-batch triplet loss."""

    name: str = "semihard"
    margin: float = 1.0
    distance: str = "L2"
    soft: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and batching."""

    mode: str = "online"  # "online": mine in each batch; "triplets": explicit triplets
    triplets: str = "random"  # triplet generation of "triplets" mode: random, semihard, hard
    mine_every: int | None = None  # regenerate mined triplets every N steps (default: epoch)
    epochs: int = 5
    batch_size: int = 32  # images per batch online, triplets per batch in "triplets" mode
    sampler: str = "shuffle"  # "shuffle" or "pk"
    samples_per_class: int = 4  # K of PK batches; P = batch_size // K
    lr: float = 1e-3
    seed: int = 0
    eval_batch_size: int = 1024


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to `RUN_DIR/config.yaml` and into every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), for JSON and YAML."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a nested dict, checking section and key names."""
        return merge(cls(), values)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(section: Any, key: str, value: Any) -> Any:
    current = getattr(section, key)
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(current, tuple) and isinstance(value, int):
        return (value, value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def merge(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return `config` with `{section: {key: value}}` overrides applied; None values are skipped.

    Raises:
        ValueError: an unknown section or key (the message lists the known ones).
    """
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name, values in (overrides or {}).items():
        if name not in sections:
            raise ValueError(f"unknown config section {name!r}; expected {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ValueError(f"config section {name!r} must be a mapping")
        section = sections[name]
        known = {f.name for f in dataclasses.fields(section)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(
                    f"unknown key {name}.{key}; expected one of {', '.join(sorted(known))}"
                )
            if value is not None:
                changes[key] = _coerce(section, key, value)
        sections[name] = dataclasses.replace(section, **changes)
    return RunConfig(**sections)


# Named recipes, applied over the defaults and under a YAML file and flags.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The triplet-loss MNIST project: its shared CNN's raw 128-d ReLU output, explicit random
    # triplets, squared L2, margin 1, batch 32, 2 epochs, Adam.
    "spike": {
        "model": {"backbone": "spike_cnn", "head": False, "normalize": False},
        "loss": {"margin": 1.0, "distance": "squared-L2"},
        "train": {"mode": "triplets", "triplets": "random", "batch_size": 32, "epochs": 2,
                  "lr": 1e-3},
    },
}  # fmt: skip


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The overrides of preset `name`.

    Raises:
        ValueError: unknown preset (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML run config (sections data, model, loss, train) with the safe loader."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a run config must be a mapping of sections")
    return values
