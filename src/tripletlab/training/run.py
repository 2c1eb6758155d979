"""A whole run: checks, model, data, run folder, training, test evaluation, `metrics.json`;
and resuming one that stopped."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tripletlab.config import RunConfig, check_config, merge
from tripletlab.data import ImageSet, RunData, check_run_data, run_data
from tripletlab.evaluation import evaluate_embedder
from tripletlab.models import Embedder
from tripletlab.models.scaling import resolve_scaling
from tripletlab.models.weights import check_backbone_weights
from tripletlab.runs import RunDir
from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.distributed import is_main, main_first, process_group
from tripletlab.training.history import History
from tripletlab.training.state import TrainingState, load_state
from tripletlab.training.tensorboard import TensorBoardCallback
from tripletlab.training.trainer import Trainer
from tripletlab.training.validation import phase_stopped, resolve_monitor


@dataclass
class RunResult:
    """Where the run is, what it measured, and its training history."""

    run_dir: Path
    metrics: dict[str, Any]
    history: History


def train_run(
    config: RunConfig,
    run_dir: str | Path | None = None,
    console: Console | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult | None:
    """Train with `config`, evaluate the best checkpoint on the test set, write `metrics.json`.

    Launched by torchrun with several processes, each trains its part of every global batch;
    rank 0 alone writes the run folder, prints, and evaluates the test set; the other ranks
    return None once training is over.

    The config, the data set's settings, the run folder, the backbone and its weights are
    checked (the model is built) before any data is read, except with a classifier, whose
    outputs are the training data's classes (the data is read first: only the weights' path is
    checked before); the run folder is made once the data has loaded.

    Args:
        config: the resolved run config.
        run_dir: the run folder (empty or absent); default a new one under `runs/`.
        console: where progress goes (default stderr).
        callbacks: more training callbacks (after the progress bar and TensorBoard).
    """
    check_config(config)
    check_run_data(config)
    if config.model.backbone_weights:  # there, before a classifier's run reads its data
        check_backbone_weights(config.model.backbone_weights)
    with process_group():
        main = is_main()
        if main:  # the others write nothing (and would find rank 0's new folder)
            RunDir.check_new(run_dir)
        # Saved as the mode it resolves to, so that a later change of "auto" leaves it alone.
        config = merge(config, {"model": {"input_scaling": resolve_scaling(config.model)[0]}})
        if config.loss.classifies:  # the classifier's outputs are the training data's classes
            data = _load(config)
            config = with_classes(config, data.train)
            trainer, console = _trainer(config, console, callbacks)
            _check_val_classes(config, data, console)
        else:
            trainer, console = _trainer(config, console, callbacks)  # builds, loads weights
            data = _load(config)
        if not main:
            trainer.fit(data.train, data.val, run_dir=None)
            return None
        existed = run_dir is not None and Path(run_dir).exists()
        # Claimed under its lock: a start that loses the folder to another removes nothing.
        with RunDir.start(config, run_dir) as run:
            _announce(trainer, run, data, console)
            try:
                history = trainer.fit(data.train, data.val, run_dir=run)
            except BaseException:
                if not run.has_checkpoint():  # nothing saved: leave no half-made run behind
                    _discard(run, existed)
                raise
    return _evaluate(run, config, data, history)


def _load(config: RunConfig) -> RunData:
    """The run's data; in a distributed run rank 0 loads it first (decoding a folder into the
    cache once), then the others (reading that cache)."""
    with main_first():
        return run_data(config)


def with_classes(config: RunConfig, train: ImageSet) -> RunConfig:
    """`config` with `model.classes` and `model.class_names` set to the classes of the
    training images (sorted labels; names from the data set, else the label as text).

    Raises:
        ValueError: fewer than two classes.
    """
    classes = sorted(int(label) for label in np.unique(train.labels))
    names = [train.class_names[c] if c < len(train.class_names) else str(c) for c in classes]
    return merge(config, {"model": {"classes": classes, "class_names": names}})


def _check_val_classes(config: RunConfig, data: RunData, console: Console) -> None:
    """Say which validation classes the classifier has no output for; refuse a run whose
    best epoch would be chosen by the accuracy of no image.

    Raises:
        ValueError: monitoring val_accuracy with no validation image of a training class.
    """
    if len(data.val) < 2:
        return
    unknown = sorted(set(data.val.labels.tolist()) - set(config.model.classes))
    if not unknown:
        return
    none_known = len(unknown) == len(set(data.val.labels.tolist()))
    if none_known and resolve_monitor(config, True) == "val_accuracy":
        raise ValueError(
            "no validation image is of a training class, so val_accuracy cannot pick the "
            "best epoch: use --monitor val_map_at_r (or val_loss)"
        )
    console.print(
        f"validation classes {unknown[:10]} are not among the training classes: val_loss and "
        "val_accuracy count only the other validation images"
    )


def resume_run(
    run_dir: str | Path,
    console: Console | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult | None:
    """Go on with a run that was stopped or killed, from its latest resumable checkpoint, with
    its own config; ends as the run would have ended had it never stopped (same weights and
    metrics, on the same machine). A distributed run resumes under torchrun with the same
    number of processes; every rank reads the run folder, rank 0 alone writes it and returns
    the result (the others None).

    A run stopped before its first checkpoint is trained from the start, in the same folder.

    Raises:
        FileNotFoundError: not a run folder.
        ValueError: a checkpoint without training state (written by an older version).
    """
    run = RunDir.open(run_dir)
    config = run.config
    check_config(config)
    check_run_data(config)
    with process_group(), run.lock() if is_main() else nullcontext():
        with main_first():  # the others read the run once rank 0 has tidied it
            if is_main():
                run.remove_partial_writes()
        # Stopped before its first checkpoint: nothing to go on from, so it starts over.
        state = load_state(run) if run.has_checkpoint() else None
        # A resumed run has its own weights: its backbone_weights file is not read again.
        trainer, console = _trainer(config, console, callbacks, backbone_weights=state is None)
        data = _load(config)
        if is_main():
            _say_where(run, config, state, console, len(data.val) > 1)
        history = trainer.fit(data.train, data.val, run_dir=run, resume=state)
    if not is_main():
        return None
    return _evaluate(run, config, data, history)


def _say_where(
    run: RunDir,
    config: RunConfig,
    state: TrainingState | None,
    console: Console,
    validating: bool,
) -> None:
    """Print where training goes on; a run that starts over loses the logs of the attempt."""
    schedule = [n for n, p in enumerate(config.resolved_phases(), 1) for _ in range(p.epochs)]
    if state is not None:  # epochs left, less those of phases that stopped early
        logs, patience = state.meta["history"]["epochs"], config.train.patience
        monitor = resolve_monitor(config, validating)
        left = [n for n in schedule[state.epoch :]
                if not phase_stopped(logs, n, patience, monitor)]  # fmt: skip
    if state is None:
        shutil.rmtree(run.tensorboard, ignore_errors=True)
        console.print(f"{run} has no checkpoint yet: training it from the start")
    elif not left:
        console.print(f"{run} finished training; evaluating its best checkpoint again")
    else:
        step = f", step {state.step}" if state.step else ""
        console.print(f"resuming {run} at epoch {state.epoch + 1}{step}")


def _trainer(
    config: RunConfig,
    console: Console | None,
    callbacks: list[Callback] | None,
    backbone_weights: bool = True,
) -> tuple[Trainer, Console]:
    """The Trainer with a progress bar, TensorBoard and `callbacks`, and the console used."""
    console = console or Console(stderr=True, markup=False)  # paths print as they are
    epochs = sum(phase.epochs for phase in config.resolved_phases())
    progress = [ProgressCallback(console, epochs), TensorBoardCallback()]
    if not is_main():  # rank 0 of a distributed run shows progress and writes the logs
        progress, callbacks = [], []
    trainer = Trainer(config, callbacks=[*progress, *(callbacks or [])],
                      backbone_weights=backbone_weights)  # fmt: skip
    return trainer, console


def _announce(trainer: Trainer, run: RunDir, data: RunData, console: Console) -> None:
    console.print(
        f"run folder {run}: {len(data.train):,} training, {len(data.val):,} validation, "
        f"{len(data.test):,} test images"
    )
    if trainer.weights_report is not None:
        loaded = trainer.weights_report
        console.print(
            f"backbone weights from {trainer.config.model.backbone_weights}: "
            f"{len(loaded['missing'])} missing, {len(loaded['unexpected'])} unexpected keys"
        )


def _evaluate(run: RunDir, config: RunConfig, data: RunData, history: History) -> RunResult:
    """The test metrics of the run's best checkpoint, written to `metrics.json`."""
    best = Embedder.from_pretrained(run.path)
    metrics = evaluate_embedder(best, data, config.train.eval_batch_size)
    metrics.update(train_seconds=history.train_seconds, best_epoch=history.best_epoch)
    return RunResult(run.path, run.write_metrics(metrics), history)


def _discard(run: RunDir, existed: bool) -> None:
    """Remove what a failed start wrote into the run folder (the folder too if it made it)."""
    if not existed:
        shutil.rmtree(run.path, ignore_errors=True)
        return
    for child in run.path.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
