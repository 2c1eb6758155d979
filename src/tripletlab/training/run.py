"""A whole run: data, run folder, training, final evaluation, `metrics.json`."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console

from tripletlab.config import RunConfig
from tripletlab.data.datasets import DATASETS, RunData, load_run_data
from tripletlab.data.triplets import check_rule
from tripletlab.evaluation.evaluate import evaluate_embedder, write_metrics
from tripletlab.losses import build_loss
from tripletlab.models import Embedder, backbone_names
from tripletlab.models.embedder import check_tta_shift
from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.tensorboard import TensorBoardCallback
from tripletlab.training.trainer import History, Trainer, check_ema
from tripletlab.utils.io import atomic_write_bytes

CONFIG_FILE = "config.yaml"


@dataclass
class RunResult:
    """Where the run is, what it measured, and its training history."""

    run_dir: Path
    metrics: dict[str, Any]
    history: History


def new_run_dir(config: RunConfig, run_dir: Path | None = None, base: Path = Path("runs")) -> Path:
    """Create the run folder: `run_dir` if given (it must be empty or absent), else a new
    `runs/<time>-<backbone>-<loss>` that never reuses an existing name.

    Raises:
        ValueError: `run_dir` already holds something.
    """
    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ValueError(
                f"run folder {run_dir} is not empty; choose another --run-dir or remove it"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model.backbone}-{config.loss.name}"
    for attempt in range(1000):
        candidate = Path(base) / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise ValueError(f"could not create a new run folder under {base}")


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a tripletlab run folder (no {CONFIG_FILE})")
    return RunConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def check_config(config: RunConfig) -> None:
    """Refuse a config that cannot train, before any data is loaded or folder created.

    Raises:
        ValueError: naming the setting and what is accepted.
    """
    build_loss(config.loss.name, margin=config.loss.margin, distance=config.loss.distance,
               soft=config.loss.soft)  # fmt: skip
    optional = config.model.backbone.startswith(("torchvision:", "timm:"))
    if config.model.backbone not in backbone_names() and not optional:
        raise ValueError(
            f"unknown backbone {config.model.backbone!r}; expected one of "
            f"{', '.join(backbone_names())}"
        )
    if config.data.dataset not in DATASETS and not Path(config.data.dataset).expanduser().is_dir():
        raise ValueError(
            f"unknown dataset {config.data.dataset!r}; expected {', '.join(DATASETS)} or a folder "
            "with one sub-folder per class"
        )
    if config.train.mode not in ("online", "triplets"):
        raise ValueError(f"unknown mode {config.train.mode!r}; expected online or triplets")
    check_rule(config.train.triplets)
    if config.train.sampler not in ("shuffle", "pk"):
        raise ValueError(f"unknown sampler {config.train.sampler!r}; expected shuffle or pk")
    check_ema(config.train.ema)
    check_tta_shift(config.model)
    for phase in config.resolved_phases():
        if phase.epochs < 1 or phase.lr <= 0:
            raise ValueError(f"each phase needs epochs >= 1 and lr > 0, got {phase}")
        if phase.freeze not in ("none", "backbone") or phase.optimizer not in ("adam", "sgd"):
            raise ValueError(
                f"phase freeze must be none or backbone, optimizer adam or sgd; got {phase}"
            )
    positive = {
        "epochs": config.train.epochs,
        "lr": config.train.lr,
        "embedding_dim": config.model.embedding_dim,
        "batch_size": config.train.batch_size - 1,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} is too small: {value} (batch_size must be at least 2)")
    if config.loss.margin < 0:
        raise ValueError(f"margin must be >= 0, got {config.loss.margin}")
    if (
        config.train.sampler == "pk"
        and config.train.batch_size < 2 * config.train.samples_per_class
    ):
        raise ValueError("pk batches need batch_size >= 2 * samples_per_class (two classes)")


def write_augment_grid(model: Embedder, images: np.ndarray, path: Path, seed: int = 0) -> Path:
    """`augment.png`: the first image and nine random augmentations made by the model's own
    `Augment` layer (in training mode)."""
    from tripletlab.viz.plots import augment_grid  # viz imports this module: import here

    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the picture is reproducible and training's RNG is untouched
    try:
        augment = copy.deepcopy(model.augment).train()
        with torch.no_grad():
            batch = model.rescale(torch.from_numpy(images[:1]).repeat(9, *[1] * (images.ndim - 1)))
            out = augment(batch).mul(255).round().clamp(0, 255).to(torch.uint8)
    finally:
        torch.set_rng_state(generator_state)
    out = out.permute(0, 2, 3, 1).numpy()
    return augment_grid(images[0], out[..., 0] if images.ndim == 3 else out, path)


def train_run(
    config: RunConfig,
    run_dir: Path | None = None,
    console: Console | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult:
    """Train with `config`, evaluate the best checkpoint on the test set, write `metrics.json`."""
    check_config(config)
    console = console or Console(stderr=True)
    data = _load_data(config)
    run_dir = new_run_dir(config, run_dir)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write_bytes(run_dir / CONFIG_FILE, text.encode())
    console.print(
        f"run folder {run_dir}: {len(data.train):,} training, {len(data.val):,} validation, "
        f"{len(data.test):,} test images"
    )
    progress = ProgressCallback(console, sum(p.epochs for p in config.resolved_phases()))
    tensorboard = TensorBoardCallback(run_dir / "tensorboard")
    trainer = Trainer(config, run_dir, [progress, tensorboard, *(callbacks or [])])
    if trainer.weights_report is not None:
        loaded = trainer.weights_report
        console.print(
            f"backbone weights from {config.model.backbone_weights}: "
            f"{len(loaded['missing'])} missing, {len(loaded['unexpected'])} unexpected keys"
        )
    if trainer.model.augment.enabled:
        write_augment_grid(trainer.model, data.train.images, run_dir / "augment.png")
    history = trainer.fit(data.train, data.val)
    best = Embedder.from_pretrained(run_dir)
    metrics = evaluate_embedder(best, data, config.train.eval_batch_size)
    metrics.update(train_seconds=history.train_seconds, best_epoch=history.best_epoch)
    metrics = write_metrics(run_dir, metrics)
    return RunResult(run_dir, metrics, history)


def _load_data(config: RunConfig) -> RunData:
    model = config.model
    return load_run_data(config.data, config.train.seed, model.image_size, model.channels)


def load_run(run_dir: Path) -> tuple[RunConfig, RunData, Embedder]:
    """A run's config, its data (the same parts as in training) and its best checkpoint."""
    config = read_run_config(run_dir)
    embedder = Embedder.from_pretrained(run_dir)
    return config, _load_data(config), embedder


def evaluate_run(run_dir: Path) -> dict[str, Any]:
    """Recompute the test metrics of a run's best checkpoint and rewrite them in `metrics.json`."""
    config, data, embedder = load_run(run_dir)
    metrics = evaluate_embedder(embedder, data, config.train.eval_batch_size)
    return write_metrics(run_dir, metrics)
