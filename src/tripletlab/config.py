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

# Images per forward pass when embedding. Small enough that each activation stays under
# glibc's 32 MiB mmap limit (larger blocks are mapped and page-faulted in every pass): on 2 CPU
# cores 60,000 MNIST images took 4.1-4.5 s at 128 against 8.7-9.4 s at 1024 (`seed_cnn`), the
# default run's 70,000 evaluation embeddings and metrics 12-14 s against 17-18 s.
EMBED_BATCH_SIZE = 128


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how much of them to use."""

    dataset: str = "mnist"  # "mnist", or a folder with one sub-folder per class
    limit: int | None = None  # use only this many training images (quick runs)
    val_fraction: float = 0.1  # held out of the training images for per-epoch validation
    # Split specs ("train[:40%]"); folders have one source split, "train". Unset: MNIST holds
    # out val_fraction of its train split; a folder is split 80/10/10, stratified.
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    classes: tuple[int, ...] | None = None  # keep only these class ids (e.g. digits 5-9)
    per_class: int | None = None  # keep at most this many training images per class


@dataclass(frozen=True)
class ModelConfig:
    """The embedding network."""

    backbone: str = "seed_cnn"
    embedding_dim: int = 256  # size of the linear head's output
    head: bool = True  # False: the backbone's output is the embedding
    normalize: bool = True  # L2-normalize the embedding
    channels: int = 1
    image_size: tuple[int, int] = (28, 28)
    backbone_weights: str | None = None  # run folder, .safetensors or .pt/.pth to start from
    # Augmentation inside the model, in training only.
    flip: bool = False  # random horizontal flip (off for digits)
    rotation: float = 0.0  # largest random rotation, degrees
    translate: float = 0.0  # largest random shift, fraction of the image size
    # Test-time views: in eval mode, average the embeddings of the image and of its copies
    # rolled by this many pixels up, down, left and right (pixels leaving one edge come back at
    # the other; on MNIST's empty border that is a shift); 0: the image alone.
    tta_shift: int = 0


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
    schedule: str = "constant"  # "constant", or "cosine" decay to 0 over the run
    seed: int = 0
    eval_batch_size: int = EMBED_BATCH_SIZE
    # Decay of an exponential moving average of the weights (e.g. 0.998); the average, not the
    # raw weights, is validated and checkpointed. Step t uses min(ema, (1 + t) / (10 + t)).
    # None: no average.
    ema: float | None = None
    # BatchNorm in training mode? None: yes, unless backbone weights were loaded (transfer),
    # where it stays in inference mode. Frozen BatchNorm is always in inference mode.
    bn_train: bool | None = None


@dataclass(frozen=True)
class PhaseConfig:
    """One phase of training: the Keras guide's "train the head" or "fine-tune" step.

    The optimizer is rebuilt at the start of each phase, over the parameters then trainable.
    """

    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" or "sgd"
    freeze: str = "none"  # "none" or "backbone"
    schedule: str = "constant"  # "constant", or "cosine": lr decays to 0 over the phase


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to `RUN_DIR/config.yaml` and into every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Empty: one phase of `train.epochs` at `train.lr`, nothing frozen.
    phases: tuple[PhaseConfig, ...] = ()

    def resolved_phases(self) -> tuple[PhaseConfig, ...]:
        """The phases to run (one implicit phase when none are configured)."""
        train = self.train
        implicit = PhaseConfig(epochs=train.epochs, lr=train.lr, schedule=train.schedule)
        return self.phases or (implicit,)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), for JSON and YAML."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a nested dict, checking section and key names."""
        return merge(cls(), values)


def plain(value: Any) -> Any:
    """Nested dicts, lists and tuples as dicts and lists (tuples become lists), for JSON/YAML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
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
        if name == "phases":
            sections["phases"] = _phases(values)
            continue
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
PRESETS: dict[str, dict[str, Any]] = {
    # The triplet-loss MNIST project: its shared CNN's raw 128-d ReLU output, explicit random
    # triplets, squared L2, margin 1, batch 32, 2 epochs, Adam.
    "spike": {
        "model": {"backbone": "spike_cnn", "head": False, "normalize": False},
        "loss": {"margin": 1.0, "distance": "squared-L2"},
        "train": {"mode": "triplets", "triplets": "random", "batch_size": 32, "epochs": 2,
                  "lr": 1e-3},
    },
    # Time to quality on 2 CPU cores (measured: Precision@1 0.9902, MAP@R 0.9824 after 46 s of
    # training): the light spike_cnn with head and L2 norm, PK batches, cosine decay.
    "fast": {
        "model": {"backbone": "spike_cnn", "embedding_dim": 64},
        "loss": {"name": "semihard", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 3,
                  "lr": 3e-3, "schedule": "cosine"},
    },
    # The most accurate recipe found for 5 minutes on 2 CPU cores: resnet_small, rotations and
    # shifts inside the model, PK batches, cosine decay, a moving average of the weights, and
    # test-time views (one-pixel shifts). MNIST test set, seeds 0 / 1 / 2: Precision@1 0.9955 /
    # 0.9951 / 0.9952, MAP@R 0.9901 / 0.9896 / 0.9900, 224 s to 243 s of training in a slow
    # machine state (README, "Performance").
    "accurate": {
        "model": {"backbone": "resnet_small", "embedding_dim": 64, "rotation": 10.0,
                  "translate": 0.1, "tta_shift": 1},
        "loss": {"name": "semihard", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 64, "samples_per_class": 8, "epochs": 4,
                  "lr": 3e-3, "schedule": "cosine", "ema": 0.998},
    },
    # The Keras transfer-learning guide: train a new head on a frozen backbone, then unfreeze
    # everything and fine-tune at a very low learning rate (BatchNorm stays in inference mode).
    "transfer": {
        "phases": [
            {"epochs": 10, "lr": 1e-3, "optimizer": "adam", "freeze": "backbone"},
            {"epochs": 10, "lr": 1e-5, "optimizer": "adam", "freeze": "none"},
        ],
    },
}  # fmt: skip


def preset(name: str) -> dict[str, Any]:
    """The overrides of preset `name`.

    Raises:
        ValueError: unknown preset (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def _phases(values: Any) -> tuple[PhaseConfig, ...]:
    if values is None:
        return ()
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, dict) for v in values):
        raise ValueError("phases must be a list of mappings (epochs, lr, optimizer, freeze)")
    known = {f.name for f in dataclasses.fields(PhaseConfig)}
    phases = []
    for number, phase in enumerate(values, start=1):
        unknown = set(phase) - known
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(sorted(unknown))} in phase {number}; "
                f"expected {', '.join(sorted(known))}"
            )
        phases.append(PhaseConfig(**{k: float(v) if k == "lr" else v for k, v in phase.items()}))
    return tuple(phases)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML run config (sections data, model, loss, train) with the safe loader."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a run config must be a mapping of sections")
    return values
